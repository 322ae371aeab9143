// The record index of a LLaVA data file: where each record lies in the file (byte offset and length)
// and the line:col of its first character, found in one pass over the file in 4 MiB chunks. With it a
// record is one positioned read away, so training reads records in any (shuffled) order and resumes
// at any one without holding the file: LLaVA-665k's instruction mix is a single ~1 GB JSON array, past
// V8's largest string (~512 MB), and LLaVA writes its files on one line.
//
// A `.json` file is checked as JSON while it is indexed (a byte-level state machine that keeps its
// place across chunks, with an explicit stack, so no nesting depth overflows it): a syntax error makes
// the whole file unusable, as JSON.parse would, and is reported at its line:col with V8's own wording
// (JSON.parse run on the failing stretch alone). Records themselves are parsed when they are read. A
// `.jsonl` file is indexed by lines: each non-blank line is a record, parsed (and, if bad, reported) when
// it is read. Columns count code points, as the rest of pipec's positions do.
//
// The index is cached by the data file's size and SHA-256 (the mtime first, so an untouched file costs
// one stat) in the run folder, next to the pre-flight's cache and for the same reasons: it lives and
// dies with the run that uses it, nothing global goes stale, and nothing is written next to the data.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { M, runtimeError } from '../errors.js';
import { writeFileAtomic } from '../weights/atomic.js';

export type IndexKind = 'array' | 'lines';

export interface FileStamp {
  size: number;
  mtimeMs: number;
  sha256: string;
}

/** Record i lies at bytes [offset[i], offset[i] + length[i]) and starts at line[i]:col[i]. */
export interface RecordIndex {
  kind: IndexKind;
  count: number;
  offset: Float64Array;
  length: Uint32Array;
  line: Uint32Array;
  col: Float64Array;
  stamp: FileStamp;
}

/** Index files kept in the cache folder's `data-index/` (one per data file a run reads). */
export const INDEX_DIR = 'data-index';
const CHUNK = 4 << 20;

export function indexKindOf(file: string): IndexKind {
  return /\.(jsonl|ndjson)$/i.test(file) ? 'lines' : 'array';
}

/**
 * The index of `file`, from `cacheDir`'s cache when it still fits the file, else built (and cached).
 * `shown` is the file as the program names it, for errors (PIPE9001 missing, PIPE9002 bad JSON).
 */
export function loadIndex(file: string, shown: string, cacheDir?: string): RecordIndex {
  const kind = indexKindOf(file);
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
    if (!st.isFile()) throw Object.assign(new Error('is a directory'), { code: st.isDirectory() ? 'EISDIR' : 'ENOTFILE' });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR')
      throw runtimeError(M.DataFileMissing, [shown], { file: shown }, code === 'EISDIR' ? 'it is a directory; `file:` must name a .json or .jsonl file' : `looked for ${path.resolve(file)}`);
    throw runtimeError(M.DataFileMissing, [shown], { file: shown }, `it cannot be read: ${(e as Error).message}`);
  }
  const cacheFile = cacheDir ? path.join(cacheDir, INDEX_DIR, `${createHash('sha256').update(`${path.resolve(file)}\0${kind}`).digest('hex').slice(0, 16)}.idx`) : undefined;
  const cached = cacheFile ? readCachedIndex(cacheFile, file, kind, st) : undefined;
  if (cached) return cached;
  const index = buildIndex(file, kind, shown);
  const after = fs.statSync(file, { throwIfNoEntry: false });
  // Cached only when the file held still while it was read (otherwise the offsets may not match it).
  if (cacheFile && after && after.size === index.stamp.size && after.mtimeMs === index.stamp.mtimeMs) {
    try {
      fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
      writeFileAtomic(cacheFile, encodeIndex(index, path.resolve(file)));
    } catch {
      // only a cache: a read-only run folder costs a rebuild next time, nothing else
    }
  }
  return index;
}

// ---- building ----

/** Builds the index in one pass over the file (throws PIPE9001 / PIPE9002, located). */
export function buildIndex(file: string, kind: IndexKind, shown: string): RecordIndex {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw runtimeError(M.DataFileMissing, [shown], { file: shown }, `it cannot be read: ${(e as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    const hash = createHash('sha256');
    const out = new IndexBuilder();
    const scanner = kind === 'array' ? new ArrayScanner(out) : new LineScanner(out);
    const buf = Buffer.allocUnsafe(CHUNK);
    let base = 0;
    for (let n; (n = fs.readSync(fd, buf, 0, CHUNK, base)) > 0; base += n) {
      const chunk = buf.subarray(0, n);
      hash.update(chunk);
      if (!scanner.failed) scanner.feed(chunk, base);
    }
    if (!scanner.failed) scanner.finish(base);
    if (scanner.failed) throw syntaxError(fd, scanner as ArrayScanner, shown);
    return out.done(kind, { size: base, mtimeMs: st.mtimeMs, sha256: hash.digest('hex') });
  } finally {
    fs.closeSync(fd);
  }
}

class IndexBuilder {
  count = 0;
  offset = new Float64Array(1024);
  length = new Uint32Array(1024);
  line = new Uint32Array(1024);
  col = new Float64Array(1024);

  add(offset: number, length: number, line: number, col: number): void {
    if (this.count === this.offset.length) {
      const grow = <T extends Float64Array | Uint32Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.offset = grow(this.offset);
      this.length = grow(this.length);
      this.line = grow(this.line);
      this.col = grow(this.col);
    }
    const i = this.count++;
    this.offset[i] = offset;
    this.length[i] = length;
    this.line[i] = line;
    this.col[i] = col;
  }

  done(kind: IndexKind, stamp: FileStamp): RecordIndex {
    const n = this.count;
    return { kind, count: n, offset: this.offset.slice(0, n), length: this.length.slice(0, n), line: this.line.slice(0, n), col: this.col.slice(0, n), stamp };
  }
}

interface Scanner {
  failed: boolean;
  feed(buf: Buffer, base: number): void;
  finish(size: number): void;
}

/** JSON Lines: each line that is not blank is a record; its text is parsed when it is read. */
class LineScanner implements Scanner {
  failed = false;
  private line = 1;
  private lineStart = 0;
  /** Offset and col of the line's first non-blank byte, or -1 while the line is blank so far. */
  private first = -1;
  private firstCol = 1;
  private col = 1;
  private lastNonBlank = -1;

  constructor(private readonly out: IndexBuilder) {}

  feed(buf: Buffer, base: number): void {
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i]!, o = base + i;
      if (c === 0x0a) {
        this.endLine();
        this.line++;
        this.lineStart = o + 1;
        this.col = 1;
        continue;
      }
      const bom = o === 0 && c === 0xef && buf[i + 1] === 0xbb && buf[i + 2] === 0xbf;
      if (bom) {
        i += 2; // a UTF-8 byte-order mark counts as one blank column
        this.col++;
        continue;
      }
      if (this.first < 0 && !(c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0b || c === 0x0c)) ((this.first = o), (this.firstCol = this.col));
      if (c !== 0x0d && c !== 0x20 && c !== 0x09) this.lastNonBlank = o;
      if ((c & 0xc0) !== 0x80) this.col++;
    }
  }

  private endLine(): void {
    // The record is the whole line (leading blanks included, so positions in it are line positions)
    // without its line break; a line of blanks is no record.
    if (this.first >= 0) this.out.add(this.lineStart, Math.max(this.lastNonBlank + 1, this.first + 1) - this.lineStart, this.line, this.firstCol);
    this.first = -1;
  }

  finish(size: number): void {
    void size;
    this.endLine();
  }
}

// The array scanner's states.
const START = 0, VALUE = 1, ARR_FIRST = 2, OBJ_FIRST = 3, OBJ_KEY = 4, COLON = 5, AFTER = 6, STR = 7, STR_ESC = 8, STR_HEX = 9, LIT = 10, END = 11;
const N_MINUS = 20, N_ZERO = 21, N_INT = 22, N_DOT = 23, N_FRAC = 24, N_E = 25, N_ESIGN = 26, N_EXP = 27;
const OPEN_ARRAY = 0x5b, OPEN_OBJECT = 0x7b;
const LITERALS: Record<number, Buffer> = { 0x74: Buffer.from('true'), 0x66: Buffer.from('false'), 0x6e: Buffer.from('null') };

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

/**
 * One JSON document that must be an array: checks its syntax (what JSON.parse accepts) and records
 * each top-level element's byte range and start position. On an error it stops with the offset of the
 * first bad byte (for a bad number or literal, where it starts), as `scanJson` reports it.
 */
class ArrayScanner implements Scanner {
  failed = false;
  error = { offset: 0, line: 1, col: 1, notArray: undefined as string | undefined };
  /** Where the failing stretch starts for V8's wording: the element being read, or the last one. */
  windowStart = 0;
  windowPrefix = '[';

  private state = START;
  private stack: number[] = [];
  private line = 1;
  private col = 1;
  private isKey = false;
  private hexLeft = 0;
  private lit: Buffer = LITERALS[0x74]!;
  private litAt = 0;
  private tokenStart = 0; // where the current number or literal started
  private markAt = 0; // the '.' or 'e' of a number that needs a digit next
  private element = { offset: -1, line: 0, col: 0 };
  private lastElement = -1;
  private arrayOpen = 0;
  private closedAt = -1;

  constructor(private readonly out: IndexBuilder) {}

  feed(buf: Buffer, base: number): void {
    const n = buf.length;
    let i = 0;
    while (i < n) {
      const c = buf[i]!;
      const o = base + i;
      switch (this.state) {
        case STR: {
          // the bulk of a LLaVA file: plain string bytes, scanned in a tight loop
          let j = i, col = this.col;
          for (; j < n; j++) {
            const d = buf[j]!;
            if (d === 0x22 || d === 0x5c || d < 0x20) break;
            if ((d & 0xc0) !== 0x80) col++;
          }
          this.col = col;
          i = j;
          if (j === n) continue;
          const d = buf[j]!;
          if (d < 0x20) return void this.fail(base + j);
          if (d === 0x5c) this.state = STR_ESC;
          else if (this.isKey) this.state = COLON;
          else this.valueDone(base + j + 1);
          break;
        }
        case STR_ESC:
          if (c === 0x75) ((this.hexLeft = 4), (this.state = STR_HEX));
          else if (c === 0x22 || c === 0x5c || c === 0x2f || c === 0x62 || c === 0x66 || c === 0x6e || c === 0x72 || c === 0x74) this.state = STR;
          else return void this.fail(o);
          break;
        case STR_HEX:
          if (!isHex(c)) return void this.fail(o);
          if (--this.hexLeft === 0) this.state = STR;
          break;
        case LIT:
          if (c !== this.lit[this.litAt]) return void this.fail(this.tokenStart, this.col - (o - this.tokenStart));
          if (++this.litAt === this.lit.length) this.valueDone(o + 1);
          break;
        case N_MINUS:
          if (c === 0x30) this.state = N_ZERO;
          else if (isDigit(c)) this.state = N_INT;
          else return void this.fail(this.tokenStart, this.col - (o - this.tokenStart));
          break;
        case N_ZERO:
        case N_INT:
        case N_FRAC:
        case N_EXP:
          if (isDigit(c) && this.state !== N_ZERO) break;
          if (c === 0x2e && (this.state === N_ZERO || this.state === N_INT)) ((this.state = N_DOT), (this.markAt = o));
          else if ((c === 0x65 || c === 0x45) && this.state !== N_EXP) ((this.state = N_E), (this.markAt = o));
          else {
            this.valueDone(o); // the number ended before this byte, which the next state reads
            continue;
          }
          break;
        case N_DOT:
          if (!isDigit(c)) return void this.fail(this.markAt, this.col - (o - this.markAt));
          this.state = N_FRAC;
          break;
        case N_E:
          if (c === 0x2b || c === 0x2d) this.state = N_ESIGN;
          else if (isDigit(c)) this.state = N_EXP;
          else return void this.fail(this.markAt, this.col - (o - this.markAt));
          break;
        case N_ESIGN:
          if (!isDigit(c)) return void this.fail(this.markAt, this.col - (o - this.markAt));
          this.state = N_EXP;
          break;
        default: {
          if (isWs(c)) break;
          if (this.state === START && o === 0 && c === 0xef && buf[i + 1] === 0xbb && buf[i + 2] === 0xbf) {
            i += 3; // a UTF-8 byte-order mark: three bytes, one column
            this.col++;
            continue;
          }
          if (!this.token(c, o)) return;
        }
      }
      // the byte is consumed: the position moves past it
      if (c === 0x0a) ((this.line += 1), (this.col = 1));
      else if ((c & 0xc0) !== 0x80) this.col++;
      i++;
    }
  }

  /** A structural byte (not whitespace) in one of the structural states. False when it failed. */
  private token(c: number, o: number): boolean {
    switch (this.state) {
      case START:
        if (c === OPEN_ARRAY) {
          this.stack.push(OPEN_ARRAY);
          this.state = ARR_FIRST;
          this.arrayOpen = o;
          return true;
        }
        this.windowPrefix = '';
        this.windowStart = 0;
        if (c === OPEN_OBJECT || c === 0x22 || c === 0x2d || isDigit(c) || LITERALS[c]) {
          this.error.notArray = c === OPEN_OBJECT ? 'an object' : c === 0x22 ? 'a string' : c === 0x6e ? 'null' : c === 0x74 || c === 0x66 ? 'a boolean' : 'a number';
        }
        this.fail(o);
        return false;
      case ARR_FIRST:
      case VALUE:
        if (c === 0x5d && this.state === ARR_FIRST) return this.close(o);
        return this.startValue(c, o);
      case OBJ_FIRST:
        if (c === 0x7d) return this.close(o);
        if (c !== 0x22) return this.fail(o);
        this.isKey = true;
        this.state = STR;
        return true;
      case OBJ_KEY:
        if (c !== 0x22) return this.fail(o);
        this.isKey = true;
        this.state = STR;
        return true;
      case COLON:
        if (c !== 0x3a) return this.fail(o);
        this.state = VALUE;
        return true;
      case AFTER: {
        const top = this.stack[this.stack.length - 1];
        if (c === 0x2c) {
          this.state = top === OPEN_OBJECT ? OBJ_KEY : VALUE;
          return true;
        }
        if ((c === 0x5d && top === OPEN_ARRAY) || (c === 0x7d && top === OPEN_OBJECT)) return this.close(o);
        return this.fail(o);
      }
      case END:
        this.windowPrefix = '[]';
        this.windowStart = this.closedAt + 1;
        return this.fail(o);
    }
    return this.fail(o);
  }

  private startValue(c: number, o: number): boolean {
    if (this.stack.length === 1) this.element = { offset: o, line: this.line, col: this.col };
    if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      this.stack.push(c);
      this.state = c === OPEN_ARRAY ? ARR_FIRST : OBJ_FIRST;
    } else if (c === 0x22) {
      this.isKey = false;
      this.state = STR;
    } else if (c === 0x2d || isDigit(c)) {
      this.tokenStart = o;
      this.state = c === 0x2d ? N_MINUS : c === 0x30 ? N_ZERO : N_INT;
    } else if (LITERALS[c]) {
      this.tokenStart = o;
      this.lit = LITERALS[c]!;
      this.litAt = 1;
      this.state = LIT;
    } else return this.fail(o);
    return true;
  }

  private close(o: number): boolean {
    this.stack.pop();
    if (this.stack.length === 0) {
      this.state = END;
      this.closedAt = o;
      return true;
    }
    this.valueDone(o + 1);
    return true;
  }

  /** A value ended just before `end`: a top-level element is recorded. */
  private valueDone(end: number): void {
    if (this.stack.length === 1) {
      const e = this.element;
      this.out.add(e.offset, end - e.offset, e.line, e.col);
      this.lastElement = e.offset;
      this.element = { offset: -1, line: 0, col: 0 };
    }
    this.state = AFTER;
  }

  private fail(offset: number, col = this.col): false {
    this.failed = true;
    this.error.offset = offset;
    this.error.line = this.line;
    this.error.col = col;
    if (this.state !== START && this.state !== END) {
      this.windowPrefix = '[';
      this.windowStart = this.element.offset >= 0 ? this.element.offset : this.lastElement >= 0 ? this.lastElement : this.arrayOpen + 1;
    }
    return false;
  }

  finish(size: number): void {
    if (this.failed) return;
    if (this.state === N_ZERO || this.state === N_INT || this.state === N_FRAC || this.state === N_EXP) this.valueDone(size);
    if (this.state !== END) this.fail(size);
  }
}

/** PIPE9002 at the first bad byte, with V8's reason for the failing stretch when it gives one. */
function syntaxError(fd: number, s: ArrayScanner, shown: string) {
  const { offset, line, col, notArray } = s.error;
  const at = { file: shown, line, col };
  if (notArray) throw runtimeError(M.DataBadJson, [shown, `the top level must be an array of records, found ${notArray}`], at, 'a LLaVA dataset is [ { "id", "image", "conversations": [...] }, ... ]; use .jsonl for one record per line');
  const from = Math.max(0, s.windowStart);
  const bytes = Buffer.alloc(Math.max(0, offset + 64 - from));
  const got = fs.readSync(fd, bytes, 0, bytes.length, from);
  let reason = offset >= from + got ? 'Unexpected end of JSON input' : 'Unexpected character';
  try {
    JSON.parse(s.windowPrefix + bytes.toString('utf8', 0, got));
  } catch (e) {
    reason = v8Reason(e);
  }
  return runtimeError(M.DataBadJson, [shown, reason], at, 'fix the JSON at this position');
}

/** V8's JSON.parse message without its position or the echo of the input. */
export function v8Reason(err: unknown): string {
  return String((err as Error)?.message ?? err)
    .replace(/\s*in JSON at position \d+.*$/, '')
    .replace(/\s*\(line \d+ column \d+\)$/, '')
    .replace(/, ".*" is not valid JSON$/s, '');
}

// ---- the cache ----

const MAGIC = 'PIPEIDX1';

function encodeIndex(ix: RecordIndex, file: string): Buffer {
  const header = Buffer.from(JSON.stringify({ format: 'pipec.data-index', version: 1, file, kind: ix.kind, count: ix.count, ...ix.stamp }));
  const head = 8 + 4 + header.length;
  const pad = (8 - (head % 8)) % 8;
  const n = ix.count;
  const out = Buffer.alloc(head + pad + n * 24);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(header.length, 8);
  header.copy(out, 12);
  let p = head + pad;
  for (const a of [ix.offset, ix.col, ix.length, ix.line]) {
    const bytes = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    bytes.copy(out, p);
    p += bytes.length;
  }
  return out;
}

function readCachedIndex(cacheFile: string, file: string, kind: IndexKind, st: fs.Stats): RecordIndex | undefined {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(cacheFile);
  } catch {
    return undefined;
  }
  try {
    if (buf.toString('latin1', 0, 8) !== MAGIC) return undefined;
    const len = buf.readUInt32LE(8);
    const h = JSON.parse(buf.toString('utf8', 12, 12 + len)) as { file: string; kind: IndexKind; count: number } & FileStamp;
    const head = 12 + len + ((8 - ((12 + len) % 8)) % 8);
    const n = h.count;
    if (h.file !== path.resolve(file) || h.kind !== kind || h.size !== st.size || buf.length !== head + n * 24) return undefined;
    // touched: the same bytes are still a hit
    const touched = h.mtimeMs !== st.mtimeMs;
    if (touched && hashFile(file) !== h.sha256) return undefined;
    const view = (at: number, bytes: number) => buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + bytes);
    let p = head;
    const offset = new Float64Array(view(p, n * 8));
    const col = new Float64Array(view((p += n * 8), n * 8));
    const length = new Uint32Array(view((p += n * 8), n * 4));
    const line = new Uint32Array(view((p += n * 4), n * 4));
    const index: RecordIndex = { kind, count: n, offset, length, line, col, stamp: { size: h.size, mtimeMs: st.mtimeMs, sha256: h.sha256 } };
    if (touched) {
      try {
        writeFileAtomic(cacheFile, encodeIndex(index, h.file)); // with the new mtime: the next look costs a stat again
      } catch {
        // only a cache
      }
    }
    return index;
  } catch {
    return undefined;
  }
}

/** SHA-256 of a file, read in 4 MiB pieces. */
export function hashFile(file: string): string | undefined {
  const h = createHash('sha256');
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}
