// Reading Hugging Face checkpoint metadata without reading tensor data: config.json, and the JSON
// header of each safetensors file (an 8-byte little-endian length, then the header). A header that
// declares terabytes of tensors costs the same few reads as an empty one.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  file: string; // basename of the .safetensors file
  /** Absolute byte range of the tensor's data in its file (header included in the offset). */
  byteRange?: [number, number];
}

export class CheckpointError extends Error {
  constructor(
    readonly kind: 'bad-header' | 'shard-missing' | 'bad-json' | 'not-found',
    readonly file: string,
    readonly why: string,
  ) {
    super(`${file}: ${why}`);
    this.name = 'CheckpointError';
  }
}

export interface HeaderRead {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Bytes read from disk: exactly 8 + the header length. */
  bytesRead: number;
  /** Bytes of tensor data the header declares (the largest end offset). */
  dataBytes: number;
}

/** Bits per element of each safetensors dtype. */
const DTYPE_BITS: Record<string, number> = {
  BOOL: 8, U8: 8, I8: 8, F8_E4M3: 8, F8_E5M2: 8, F8_E8M0: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, I64: 64, U64: 64, F64: 64,
};
const MAX_HEADER = 100 * 1024 * 1024;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const utf8 = new TextDecoder('utf-8', { fatal: true });

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** Reads up to `length` bytes at `position`; the result is shorter only at the end of the file. */
function readAt(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

/** Reads only the 8-byte length prefix and the JSON header (open + readSync at positions), never tensor data. */
export function readSafetensorsHeader(file: string): HeaderRead {
  const base = path.basename(file);
  const bad = (why: string) => new CheckpointError('bad-header', base, why);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError('not-found', base, code === 'ENOENT' ? 'no such file' : `cannot open the file (${code ?? (e as Error).message})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw bad('it is not a regular file');
    const size = st.size;
    if (size < 8) throw bad(`the file has ${size} bytes, fewer than the 8-byte header length`);
    const prefix = readAt(fd, 8, 0);
    if (prefix.length < 8) throw bad(`only ${prefix.length} of the 8 header-length bytes could be read`);
    const n64 = prefix.readBigUInt64LE(0);
    if (n64 === 0n) throw bad('the header length is 0');
    if (n64 > MAX_SAFE) throw bad(`the header length ${n64} exceeds the largest exact integer ${Number.MAX_SAFE_INTEGER}`);
    if (n64 > BigInt(MAX_HEADER)) throw bad(`the header length ${n64} exceeds the ${MAX_HEADER}-byte limit`);
    const n = Number(n64);
    if (8 + n > size) throw bad(`the header length ${n} runs past the end of the ${size}-byte file`);
    const headerBuf = readAt(fd, n, 8);
    if (headerBuf.length < n) throw bad(`the header length is ${n} but only ${headerBuf.length} bytes could be read`);
    const bytesRead = 8 + headerBuf.length;

    let text: string;
    try {
      text = utf8.decode(headerBuf);
    } catch {
      throw bad('the header is not valid UTF-8');
    }
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (e) {
      throw bad(`the header is not valid JSON (${(e as Error).message})`);
    }
    if (!isObject(header)) throw bad(`the header is not a JSON object but ${header === null ? 'null' : Array.isArray(header) ? 'an array' : typeof header}`);

    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    const spans: { name: string; begin: number; end: number }[] = [];
    let dataBytes = 0;
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (!isObject(raw)) throw bad('__metadata__ is not an object');
        for (const [k, v] of Object.entries(raw)) if (typeof v !== 'string') throw bad(`__metadata__ value "${k}" is not a string`);
        metadata = Object.fromEntries(Object.entries(raw)) as Record<string, string>;
        continue;
      }
      if (!isObject(raw)) throw bad(`entry "${name}" is not an object`);
      for (const key of ['dtype', 'shape', 'data_offsets']) if (!hasOwn(raw, key)) throw bad(`tensor "${name}" is missing ${key}`);
      const { dtype, shape, data_offsets: offsets } = raw;
      if (typeof dtype !== 'string') throw bad(`tensor "${name}" has a dtype that is not a string`);
      const bits = DTYPE_BITS[dtype];
      if (!hasOwn(DTYPE_BITS, dtype) || bits === undefined) throw bad(`tensor "${name}" has unknown dtype ${dtype}`);
      if (!Array.isArray(shape) || !shape.every((d): d is number => Number.isSafeInteger(d) && d >= 0))
        throw bad(`tensor "${name}" has a shape that is not a list of non-negative integers: ${JSON.stringify(shape)}`);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o): o is number => Number.isSafeInteger(o) && o >= 0))
        throw bad(`tensor "${name}" has data_offsets that are not two non-negative integers: ${JSON.stringify(offsets)}`);
      const [begin, end] = offsets as [number, number];
      if (end < begin) throw bad(`tensor "${name}" has data_offsets [${begin}, ${end}] that end before they begin`);
      const totalBits = (shape as number[]).reduce((a, d) => a * BigInt(d), 1n) * BigInt(bits);
      const shown = `${dtype}${JSON.stringify(shape)}`;
      if (totalBits % 8n !== 0n) throw bad(`tensor "${name}" is ${shown}, which is not a whole number of bytes`);
      const expected = totalBits / 8n;
      if (BigInt(end - begin) !== expected) throw bad(`tensor "${name}" spans ${end - begin} bytes but ${shown} needs ${expected}`);
      if (end > dataBytes) dataBytes = end;
      if (end > begin) spans.push({ name, begin, end });
      tensors.set(name, { name, dtype, shape: [...(shape as number[])], file: base, byteRange: [8 + n + begin, 8 + n + end] });
    }
    spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
    for (let i = 1; i < spans.length; i++) {
      const [p, q] = [spans[i - 1], spans[i]];
      if (q.begin < p.end) throw bad(`tensors "${p.name}" and "${q.name}" overlap: bytes [${p.begin}, ${p.end}) and [${q.begin}, ${q.end})`);
    }
    const follow = size - 8 - n;
    if (dataBytes > follow) throw bad(`file is truncated: header declares ${dataBytes} bytes of data but only ${follow} follow`);
    return { tensors, metadata, bytesRead, dataBytes };
  } finally {
    fs.closeSync(fd);
  }
}

export interface CheckpointMeta {
  dir: string;
  config?: Record<string, unknown>;
  configFile?: string;
  tensors: Map<string, TensorInfo>;
  /** Basenames of the safetensors files whose headers were read. */
  files: string[];
  /** Bytes read from the safetensors files: 8 + header length for each (config and index JSON not counted). */
  bytesRead: number;
  indexFile?: string;
}

function readJson(file: string): Record<string, unknown> {
  const base = path.basename(file);
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CheckpointError('bad-json', base, (e as Error).message);
  }
  if (!isObject(parsed)) throw new CheckpointError('bad-json', base, 'it is not a JSON object');
  return parsed;
}

const INDEX = 'model.safetensors.index.json';

/**
 * dir/config.json (optional; bad JSON -> 'bad-json'), then tensors from dir/model.safetensors.index.json
 * when present (every shard it names must exist -> else 'shard-missing'; every tensor it maps to a shard
 * must be in that shard's header -> else 'bad-header'), else from every *.safetensors file in dir, sorted.
 * No safetensors at all -> no tensors and no files. A missing dir -> 'not-found'. A path to one
 * .safetensors file reads that file (and config.json beside it).
 */
export function readCheckpointMeta(where: string): CheckpointMeta {
  const st = fs.statSync(where, { throwIfNoEntry: false });
  if (!st) throw new CheckpointError('not-found', where, 'no such directory');
  // One .safetensors file (a standalone projector, one shard): its tensors, and config.json beside it.
  const single = !st.isDirectory() && where.endsWith('.safetensors') ? path.basename(where) : undefined;
  if (!st.isDirectory() && !single) throw new CheckpointError('not-found', where, 'it is not a directory or a .safetensors file');
  const dir = single ? path.dirname(where) : where;
  const meta: CheckpointMeta = { dir, tensors: new Map(), files: [], bytesRead: 0 };

  const configFile = path.join(dir, 'config.json');
  if (fs.existsSync(configFile)) {
    meta.config = readJson(configFile);
    meta.configFile = configFile;
  }
  if (single) {
    const h = readSafetensorsHeader(where);
    meta.bytesRead = h.bytesRead;
    meta.files.push(single);
    meta.tensors = h.tensors;
    return meta;
  }

  const indexFile = path.join(dir, INDEX);
  if (fs.existsSync(indexFile)) {
    meta.indexFile = indexFile;
    const wm = readJson(indexFile).weight_map;
    if (!isObject(wm)) throw new CheckpointError('bad-json', INDEX, 'weight_map is missing or is not an object of tensor name -> shard file');
    const weightMap = new Map<string, string>();
    for (const [name, shard] of Object.entries(wm)) {
      if (typeof shard !== 'string') throw new CheckpointError('bad-json', INDEX, `weight_map maps "${name}" to ${JSON.stringify(shard)}, not a file name`);
      if (shard === '' || shard === '.' || shard === '..' || /[/\\]/.test(shard))
        throw new CheckpointError('bad-json', INDEX, `weight_map maps "${name}" to "${shard}", which is not a file name in the checkpoint folder`);
      weightMap.set(name, shard);
    }
    const shards = [...new Set(weightMap.values())].sort();
    for (const s of shards) if (!fs.existsSync(path.join(dir, s))) throw new CheckpointError('shard-missing', s, `${INDEX} names this shard but it does not exist`);
    const headers = new Map<string, HeaderRead>();
    for (const s of shards) {
      const h = readSafetensorsHeader(path.join(dir, s));
      headers.set(s, h);
      meta.bytesRead += h.bytesRead;
      meta.files.push(s);
    }
    // The index decides which shard each tensor is loaded from, as a loader would.
    for (const [name, shard] of weightMap) {
      const t = headers.get(shard)!.tensors.get(name);
      if (!t) throw new CheckpointError('bad-header', shard, `${INDEX} maps "${name}" to this shard, but its header does not hold it`);
      meta.tensors.set(name, t);
    }
    return meta;
  }

  const files = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.name.endsWith('.safetensors') && !e.isDirectory())
    .map((e) => e.name)
    .sort();
  for (const s of files) {
    const h = readSafetensorsHeader(path.join(dir, s));
    meta.bytesRead += h.bytesRead;
    meta.files.push(s);
    for (const [name, t] of h.tensors) meta.tensors.set(name, t);
  }
  return meta;
}

/** Look up a dotted path such as "vision_config.hidden_size" in a parsed config.json; undefined when absent. */
export function configLookup(config: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = config;
  for (const part of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (Array.isArray(cur) ? !/^\d+$/.test(part) : !hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
