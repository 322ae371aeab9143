// Reading tensor data from, and writing, safetensors files (https://huggingface.co/docs/safetensors):
// an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the
// raw little-endian data. Headers are validated by the compiler's reader (compiler/check/checkpoint-io);
// this adds the data. F32, F16 and BF16 load as float32; we write F32.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readCheckpointMeta, type CheckpointMeta, type TensorInfo } from '../../compiler/check/checkpoint-io.js';

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}

/** Decodes one tensor's bytes to float32. */
export function decodeTensor(info: TensorInfo, bytes: Buffer): Float32Array {
  const n = info.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  switch (info.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = bytes.readFloatLE(i * 4);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(bytes.readUInt16LE(i * 2));
      return out;
    case 'BF16': {
      const u = new Uint32Array(1), f = new Float32Array(u.buffer);
      for (let i = 0; i < n; i++) {
        u[0] = bytes.readUInt16LE(i * 2) << 16;
        out[i] = f[0]!;
      }
      return out;
    }
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = bytes.readDoubleLE(i * 8);
      return out;
    default:
      throw new Error(`tensor "${info.name}" has dtype ${info.dtype}; only F32, F16, BF16 and F64 weights load`);
  }
}

export interface LoadedTensor {
  info: TensorInfo;
  data: Float32Array;
}

/**
 * Reads the named tensors of a Hugging Face weights folder (model.safetensors, or shards through
 * model.safetensors.index.json) or of one .safetensors file. `names` absent = every tensor. Missing names
 * are simply absent from the result.
 */
export function readWeights(dir: string, names?: Iterable<string>): Map<string, LoadedTensor> {
  const meta = readCheckpointMeta(dir);
  const reader = new TensorReader(meta);
  try {
    const out = new Map<string, LoadedTensor>();
    for (const name of names ? [...names] : [...meta.tensors.keys()]) {
      const info = meta.tensors.get(name);
      if (info?.byteRange) out.set(name, { info, data: reader.read(info) });
    }
    return out;
  } finally {
    reader.close();
  }
}

/** Reads tensors of one checkpoint as float32, keeping each shard file open until `close`. */
export class TensorReader {
  private readonly fds = new Map<string, number>();

  constructor(readonly meta: CheckpointMeta) {}

  read(info: TensorInfo): Float32Array {
    let fd = this.fds.get(info.file);
    if (fd === undefined) this.fds.set(info.file, (fd = fs.openSync(path.join(this.meta.dir, info.file), 'r')));
    const [begin, end] = info.byteRange!;
    const buf = Buffer.alloc(end - begin);
    fs.readSync(fd, buf, 0, end - begin, begin);
    return decodeTensor(info, buf);
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}

/** The JSON header of a file of F32 tensors written in `names` order (8-byte aligned with spaces, as the reference writer). */
function f32Header(entries: readonly { name: string; shape: number[] }[], metadata: Record<string, string>): { header: Buffer; dataBytes: number } {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...metadata } };
  let offset = 0;
  for (const e of entries) {
    const bytes = e.shape.reduce((a, b) => a * b, 1) * 4;
    header[e.name] = { dtype: 'F32', shape: e.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  return { header: Buffer.from(json, 'utf8'), dataBytes: offset };
}

/** Serialises float32 tensors to safetensors bytes (sorted names, 8-byte aligned header as the reference writer). */
export function encodeSafetensors(tensors: ReadonlyMap<string, { shape: number[]; data: Float32Array }>, metadata: Record<string, string> = {}): Buffer {
  const names = [...tensors.keys()].sort();
  const { header: hb, dataBytes } = f32Header(names.map((name) => ({ name, shape: tensors.get(name)!.shape })), metadata);
  const out = Buffer.alloc(8 + hb.length + dataBytes);
  out.writeBigUInt64LE(BigInt(hb.length), 0);
  hb.copy(out, 8);
  let p = 8 + hb.length;
  for (const name of names) {
    const d = tensors.get(name)!.data;
    Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, p); // little-endian hosts (x86, arm)
    p += d.byteLength;
  }
  return out;
}

/** A tensor to stream into a file: its data is read only when it is written, so a file never sits whole in memory. */
export interface StreamedTensor {
  name: string;
  shape: number[];
  read: () => Float32Array;
}

/**
 * Writes F32 tensors to `file` one at a time, in the order given, and fsyncs it (a shard of a large
 * model can exceed what one Buffer holds). Returns the bytes of tensor data written.
 */
export function writeSafetensorsFile(file: string, tensors: readonly StreamedTensor[], metadata: Record<string, string> = {}): number {
  const { header, dataBytes } = f32Header(tensors, metadata);
  const fd = fs.openSync(file, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length), 0);
    writeAll(fd, len);
    writeAll(fd, header);
    for (const t of tensors) {
      const d = t.read();
      const want = t.shape.reduce((a, b) => a * b, 1);
      if (d.length !== want) throw new Error(`tensor "${t.name}" has ${d.length} values, its shape [${t.shape.join(', ')}] needs ${want}`);
      writeAll(fd, new Uint8Array(d.buffer, d.byteOffset, d.byteLength)); // little-endian hosts (x86, arm)
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return dataBytes;
}

/** writeSync may write less than asked (large buffers); this loops until all is written. */
function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += fs.writeSync(fd, bytes, done, bytes.length - done);
}
