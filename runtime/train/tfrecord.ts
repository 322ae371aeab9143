// The bytes of a TensorBoard event file, written by hand (no TensorFlow, no protobuf library):
//   TFRecord framing (tensorflow/core/lib/io/record_writer.cc), one record per event:
//     uint64 length (little-endian) | uint32 masked CRC32C of those 8 bytes | data | uint32 masked CRC32C of data
//   and the few protobuf messages TensorBoard's scalars need (tensorflow/core/util/event.proto,
//   tensorflow/core/framework/summary.proto):
//     Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; SessionLog session_log = 7; }
//     Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
//     SessionLog { enum status = 1 (START = 1) }
// The reader (readRecords, decodeEvent) serves resume, which rewrites earlier event files without the
// steps the resumed run redoes (tensorboard.ts), and the read-back tests.

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven: a few MB/s is plenty for scalars
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's mask: a CRC stored next to data that itself holds CRCs stays distinguishable. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: the framing around `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const out = Buffer.alloc(8 + 4 + data.length + 4);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

/**
 * The records of an event file, in order, up to the first that is torn or fails its CRC (a kill
 * mid-append leaves a partial last record; nothing after it is trusted). `end` is where they stop.
 */
export function readRecords(file: Buffer): { records: Buffer[]; end: number } {
  const records: Buffer[] = [];
  let at = 0;
  while (at + 12 <= file.length) {
    const len = file.readBigUInt64LE(at);
    if (file.readUInt32LE(at + 8) !== maskedCrc32c(file.subarray(at, at + 8))) break;
    if (len > BigInt(file.length - at - 16)) break;
    const n = Number(len), data = file.subarray(at + 12, at + 12 + n);
    if (file.readUInt32LE(at + 12 + n) !== maskedCrc32c(data)) break;
    records.push(data);
    at += 16 + n;
  }
  return { records, end: at };
}

// --- protobuf, the wire format's four kinds this needs: varint (0), fixed64 (1), bytes (2), fixed32 (5)

class ProtoWriter {
  private readonly parts: Buffer[] = [];
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  private varint(v: number | bigint): void {
    let x = BigInt(v);
    const bytes: number[] = [];
    while (x >= 0x80n) {
      bytes.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    bytes.push(Number(x));
    this.parts.push(Buffer.from(bytes));
  }
  uint(field: number, v: number): this {
    if (v) { // proto3: a default value is not written
      this.key(field, 0);
      this.varint(v);
    }
    return this;
  }
  double(field: number, v: number): this {
    this.key(field, 1);
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    this.parts.push(b);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.parts.push(b);
    return this;
  }
  bytes(field: number, v: Uint8Array | string): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    this.key(field, 2);
    this.varint(b.length);
    this.parts.push(Buffer.from(b));
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export interface Scalar {
  tag: string;
  value: number;
}

const EVENT = { wallTime: 1, step: 2, fileVersion: 3, summary: 5, sessionLog: 7 } as const;

/** The first event of every file: TensorBoard reads the version ("brain.Event:2" enables SessionLog restarts). */
export function fileVersionEvent(wallTime: number): Buffer {
  return new ProtoWriter().double(EVENT.wallTime, wallTime).bytes(EVENT.fileVersion, 'brain.Event:2').done();
}

/** Scalars of one step; `simple_value` is a float32, so TensorBoard shows the value rounded to float32. */
export function scalarsEvent(wallTime: number, step: number, scalars: readonly Scalar[]): Buffer {
  const summary = new ProtoWriter();
  for (const s of scalars) summary.bytes(1, new ProtoWriter().bytes(1, s.tag).float(2, s.value).done());
  return new ProtoWriter().double(EVENT.wallTime, wallTime).uint(EVENT.step, step).bytes(EVENT.summary, summary.done()).done();
}

/**
 * SessionLog START at `step`: a restarted run. TensorBoard's EventAccumulator drops the events it read
 * earlier with a step >= `step` (purge_orphaned_data), the same rule as the rewrite on resume.
 */
export function sessionStartEvent(wallTime: number, step: number): Buffer {
  return new ProtoWriter().double(EVENT.wallTime, wallTime).uint(EVENT.step, step).bytes(EVENT.sessionLog, new ProtoWriter().uint(1, 1).done()).done();
}

/** Each top-level field of a message: its number, and its value (varint as bigint, others as bytes). */
function* protoFields(b: Buffer): Generator<{ field: number; varint?: bigint; bytes?: Buffer }> {
  let at = 0;
  const varint = (): bigint => {
    let v = 0n, shift = 0n;
    for (;;) {
      if (at >= b.length) throw new Error('truncated varint');
      const byte = b[at++]!;
      v |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
      shift += 7n;
    }
  };
  while (at < b.length) {
    const key = Number(varint()), field = key >>> 3, wire = key & 7;
    if (wire === 0) yield { field, varint: varint() };
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      yield { field, bytes: b.subarray(at, at + n) };
      at += n;
    } else if (wire === 2) {
      const n = Number(varint());
      yield { field, bytes: b.subarray(at, at + n) };
      at += n;
    } else throw new Error(`unsupported wire type ${wire}`);
    if (at > b.length) throw new Error('truncated field');
  }
}

/** An event as far as pipec writes them: what the rewrite on resume and the read-back tests look at. */
export interface DecodedEvent {
  wallTime: number;
  /** 0 when absent, as for the file version event (proto3 leaves a default value out). */
  step: number;
  fileVersion?: string;
  /** SessionLog status (1: START), when the event is one. */
  sessionStatus?: number;
  scalars: Scalar[];
}

export function decodeEvent(event: Buffer): DecodedEvent {
  const e: DecodedEvent = { wallTime: 0, step: 0, scalars: [] };
  for (const f of protoFields(event)) {
    if (f.field === EVENT.wallTime && f.bytes?.length === 8) e.wallTime = f.bytes.readDoubleLE(0);
    else if (f.field === EVENT.step && f.varint !== undefined) e.step = Number(BigInt.asIntN(64, f.varint));
    else if (f.field === EVENT.fileVersion && f.bytes) e.fileVersion = f.bytes.toString('utf8');
    else if (f.field === EVENT.sessionLog && f.bytes) {
      e.sessionStatus = 0;
      for (const s of protoFields(f.bytes)) if (s.field === 1 && s.varint !== undefined) e.sessionStatus = Number(s.varint);
    } else if (f.field === EVENT.summary && f.bytes) {
      for (const v of protoFields(f.bytes)) {
        if (v.field !== 1 || !v.bytes) continue;
        const scalar: Scalar = { tag: '', value: NaN };
        for (const t of protoFields(v.bytes)) {
          if (t.field === 1 && t.bytes) scalar.tag = t.bytes.toString('utf8');
          if (t.field === 2 && t.bytes?.length === 4) scalar.value = t.bytes.readFloatLE(0);
        }
        e.scalars.push(scalar);
      }
    }
  }
  return e;
}
