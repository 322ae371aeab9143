// Writes small, valid safetensors files for tests (zeros or given F32 data). With `sparse`, only the
// header is written and the file is extended to its declared size: a "2 GB" checkpoint costs no disk.
import * as fs from 'node:fs';
import * as path from 'node:path';

const WIDTH: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 };

export interface TensorSpec {
  dtype?: string;
  shape: number[];
  data?: Float32Array;
}

export function writeSafetensors(file: string, tensors: Record<string, TensorSpec>, opts: { sparse?: boolean } = {}): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  const parts: { at: number; bytes: Buffer | undefined; size: number }[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = t.dtype ?? 'F32';
    const size = t.shape.reduce((a, b) => a * b, 1) * WIDTH[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    parts.push({ at: offset, bytes: t.data ? Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength) : undefined, size });
    offset += size;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' '; // the format aligns data to 8 bytes
  const head = Buffer.from(json);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(head.length));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, prefix);
    fs.writeSync(fd, head);
    const base = 8 + head.length;
    if (opts.sparse) fs.ftruncateSync(fd, base + offset);
    else {
      fs.ftruncateSync(fd, base + offset);
      for (const p of parts) if (p.bytes) fs.writeSync(fd, p.bytes, 0, p.bytes.length, base + p.at);
    }
  } finally {
    fs.closeSync(fd);
  }
}

export function writeConfig(dir: string, config: Record<string, unknown>): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}
