// A protocol-buffers writer for the few TensorFlow messages a compiled step needs (graph-def.ts). The
// wire format is small (varints, length-delimited fields, little-endian floats), and writing it here
// spares a protobuf dependency and its generated code.

/** One message being written; nested messages are written into their own writer and copied in. */
export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private size = 0;

  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }

  private rawVarint(n: number | bigint): void {
    // Negative int64s take ten bytes, as two's complement.
    let v = BigInt.asUintN(64, BigInt(n));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): void {
    this.rawVarint(field * 8 + wire);
  }

  /** int32, int64, enum, bool. */
  varint(field: number, n: number | bigint | boolean): this {
    this.tag(field, 0);
    this.rawVarint(typeof n === 'boolean' ? (n ? 1 : 0) : n);
    return this;
  }

  float(field: number, f: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, f, true);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.rawVarint(b.length);
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, write: (w: ProtoWriter) => void): this {
    const w = new ProtoWriter();
    write(w);
    return this.bytes(field, w.finish());
  }

  packedVarints(field: number, values: readonly (number | boolean)[]): this {
    const w = new ProtoWriter();
    for (const v of values) w.rawVarint(typeof v === 'boolean' ? (v ? 1 : 0) : v);
    return this.bytes(field, w.finish());
  }

  packedFloats(field: number, values: readonly number[]): this {
    const b = new Uint8Array(values.length * 4);
    const view = new DataView(b.buffer);
    values.forEach((f, i) => view.setFloat32(i * 4, f, true));
    return this.bytes(field, b);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) (out.set(c, o), (o += c.length));
    return out;
  }
}
