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
}

export class CheckpointError extends Error {
  constructor(
    readonly kind: 'bad-header' | 'shard-missing' | 'bad-json' | 'not-found',
    readonly file: string,
    readonly why: string,
  ) {
    super(`${file}: ${why}`);
  }
}

export interface HeaderRead {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  bytesRead: number;
  /** Bytes of tensor data the header declares (the largest end offset). */
  dataBytes: number;
}

const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8,
};
const MAX_HEADER = 100 * 1024 * 1024;

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

export function readSafetensorsHeader(file: string): HeaderRead {
  const base = path.basename(file);
  const bad = (why: string) => new CheckpointError('bad-header', base, why);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    throw new CheckpointError('not-found', base, 'cannot open the file');
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) throw bad(`the file has ${size} bytes, fewer than the 8-byte header length`);
    const prefix = readAt(fd, 8, 0);
    const n64 = prefix.readBigUInt64LE(0);
    if (n64 === 0n) throw bad('the header length is 0');
    if (n64 > BigInt(MAX_HEADER)) throw bad(`the header length ${n64} exceeds ${MAX_HEADER} bytes`);
    const n = Number(n64);
    if (8 + n > size) throw bad(`the header length ${n} runs past the end of the ${size}-byte file`);
    const headerBuf = readAt(fd, n, 8);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch (e) {
      throw bad(`the header is not valid JSON (${(e as Error).message})`);
    }
    if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('the header is not a JSON object');
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    let dataBytes = 0;
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (raw && typeof raw === 'object' && !Array.isArray(raw)) metadata = raw as Record<string, string>;
        else throw bad('__metadata__ is not an object');
        continue;
      }
      if (!raw || typeof raw !== 'object') throw bad(`entry "${name}" is not an object`);
      const { dtype, shape, data_offsets: offsets } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== 'string') throw bad(`tensor "${name}" has no dtype`);
      const width = DTYPE_BYTES[dtype];
      if (width === undefined) throw bad(`tensor "${name}" has unknown dtype ${dtype}`);
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw bad(`tensor "${name}" has a shape that is not a list of non-negative integers`);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[1] < offsets[0])
        throw bad(`tensor "${name}" has invalid data_offsets`);
      const expected = (shape as number[]).reduce((a, b) => a * b, 1) * width;
      if (offsets[1] - offsets[0] !== expected) throw bad(`tensor "${name}" spans ${offsets[1] - offsets[0]} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`);
      dataBytes = Math.max(dataBytes, offsets[1]);
      tensors.set(name, { name, dtype, shape: shape as number[], file: base });
    }
    if (8 + n + dataBytes > size) throw bad(`file is truncated: header declares ${dataBytes} bytes of data but only ${size - 8 - n} follow`);
    return { tensors, metadata, bytesRead: 8 + headerBuf.length, dataBytes };
  } finally {
    fs.closeSync(fd);
  }
}

export interface CheckpointMeta {
  dir: string;
  config?: Record<string, unknown>;
  configFile?: string;
  tensors: Map<string, TensorInfo>;
  files: string[];
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
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CheckpointError('bad-json', base, 'it is not a JSON object');
  return parsed as Record<string, unknown>;
}

/**
 * config.json (optional), then tensors from model.safetensors.index.json when present (every shard it
 * names must exist and hold the tensors mapped to it), else from every *.safetensors file in the folder.
 */
export function readCheckpointMeta(dir: string): CheckpointMeta {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new CheckpointError('not-found', dir, 'no such directory');
  const meta: CheckpointMeta = { dir, tensors: new Map(), files: [], bytesRead: 0 };
  const configFile = path.join(dir, 'config.json');
  if (fs.existsSync(configFile)) {
    meta.config = readJson(configFile);
    meta.configFile = configFile;
  }
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  let shards: string[];
  let weightMap: Record<string, string> | undefined;
  if (fs.existsSync(indexFile)) {
    meta.indexFile = indexFile;
    const index = readJson(indexFile);
    const wm = index.weight_map;
    if (!wm || typeof wm !== 'object' || Array.isArray(wm) || !Object.values(wm).every((v) => typeof v === 'string'))
      throw new CheckpointError('bad-json', path.basename(indexFile), 'weight_map is not an object of tensor name -> shard file');
    weightMap = wm as Record<string, string>;
    shards = [...new Set(Object.values(weightMap))].sort();
    for (const s of shards) if (!fs.existsSync(path.join(dir, s))) throw new CheckpointError('shard-missing', s, 'the shard named by the index does not exist');
  } else {
    shards = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.safetensors'))
      .sort();
  }
  for (const s of shards) {
    const h = readSafetensorsHeader(path.join(dir, s));
    meta.bytesRead += h.bytesRead;
    meta.files.push(s);
    for (const [name, t] of h.tensors) meta.tensors.set(name, t);
  }
  if (weightMap) {
    for (const [name, shard] of Object.entries(weightMap)) {
      const t = meta.tensors.get(name);
      if (!t || t.file !== shard) throw new CheckpointError('bad-header', shard, `the index maps "${name}" to this shard, but its header does not hold it`);
    }
  }
  return meta;
}

/** A dotted path such as "vision_config.hidden_size" in a parsed config.json. */
export function configLookup(config: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = config;
  for (const part of dotted.split('.')) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
