// The one writer of safetensors fixtures for tests. writeSafetensors: small, valid files (zeros, given
// F32 data, or given raw bytes in any dtype); with `sparse`, only the prefix and header are written and
// the file is extended to its declared size with ftruncate: a "2 GB" checkpoint costs no disk.
// writeRawSafetensors: a hand-made prefix + header + data, for the malformed files the readers must
// reject. Files appear whole (written beside, then renamed): two test processes writing the same
// generated fixture never let a reader see half of one.
import * as fs from 'node:fs';
import * as path from 'node:path';

const WIDTH: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8,
};

export interface TensorSpec {
  dtype?: string;
  shape: number[];
  data?: Float32Array;
  /** Raw little-endian data in `dtype` (e.g. BF16 bit patterns), instead of `data`. */
  bytes?: Buffer;
}

export interface WriteOptions {
  /** Write only the prefix and header, then extend the file to its full size (a sparse file). */
  sparse?: boolean;
  /** The `__metadata__` entry; { format: 'pt' } unless given. */
  metadata?: Record<string, string>;
}

export function writeSafetensors(file: string, tensors: Record<string, TensorSpec>, opts: WriteOptions = {}): void {
  const header: Record<string, unknown> = { __metadata__: opts.metadata ?? { format: 'pt' } };
  let offset = 0;
  const parts: { at: number; bytes: Buffer | undefined; size: number }[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = t.dtype ?? 'F32';
    const width = WIDTH[dtype];
    if (width === undefined) throw new Error(`writeSafetensors: no width known for dtype ${dtype}`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    const size = count * width;
    if (t.data && (dtype !== 'F32' || t.data.length !== count)) throw new Error(`writeSafetensors: data for "${name}" must be ${count} F32 values`);
    if (t.bytes && t.bytes.length !== size) throw new Error(`writeSafetensors: bytes for "${name}" must be ${size} (${dtype}${JSON.stringify(t.shape)})`);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    parts.push({ at: offset, bytes: t.bytes ?? (t.data ? Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength) : undefined), size });
    offset += size;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' '; // the format aligns data to 8 bytes
  const head = Buffer.from(json);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(head.length));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, prefix, 0, 8, 0);
    fs.writeSync(fd, head, 0, head.length, 8);
    const base = 8 + head.length;
    if (opts.sparse) {
      fs.ftruncateSync(fd, base + offset);
    } else {
      const zeros = Buffer.alloc(Math.min(offset, 1 << 20));
      for (const p of parts) {
        if (p.bytes) fs.writeSync(fd, p.bytes, 0, p.bytes.length, base + p.at);
        else for (let done = 0; done < p.size; ) done += fs.writeSync(fd, zeros, 0, Math.min(zeros.length, p.size - done), base + p.at + done);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/**
 * A hand-made file: the 8-byte prefix (`length`, default the header's byte length), the header (an
 * object or array as JSON, a string as is, a Buffer as bytes), then `data` zero bytes.
 */
export function writeRawSafetensors(file: string, header: unknown, data = 0, length?: bigint): void {
  const head = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(length ?? BigInt(head.length));
  writeFileWhole(file, Buffer.concat([prefix, head, Buffer.alloc(data)]));
}

/** Writes beside the file, then renames: a reader sees the old file or the new one, never half. */
export function writeFileWhole(file: string, content: string | Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
}

export function writeConfig(dir: string, config: Record<string, unknown>): void {
  writeFileWhole(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}
