// The `llava_json` dataset reader: LLaVA-format records
//   [{ "id": "...", "image": "x.jpg", "conversations": [{ "from": "human", "value": "<image>\n..." }, ...] }]
// from a .json file (one array) or a .jsonl file (one record per line). Every problem is reported with
// its catalogue code and the record's line:col in the file, so a user can jump straight to it. With
// skip_bad_records a bad record is left out and listed in `skipped` (the caller warns with PIPE9008);
// nothing is ever dropped silently.
//
// Images: a record's "image" is opened only through the dataset's DataRoot (confine.ts), so a name that
// leads outside the images folder (absolute, "..", a link out) is PIPE9050 and is never opened. Reading
// checks that each image exists and starts like a PNG or JPEG (one 8-byte read per record), which
// catches wrong paths and non-image files without decoding the whole dataset (LLaVA's pretraining set
// has 558k images). A file with a valid header but a corrupt body is caught when the data pass decodes
// it (`loadRecordImage`; the pre-flight does so for every record before the first step).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MessageDef } from '../../compiler/diagnostics/catalogue.js';
import { M, PipeRuntimeError, runtimeError, type ErrorLocation } from '../errors.js';
import { ConfinementError, DataRoot } from './confine.js';
import { decodeImage, sniffImage, type RgbImage } from './images.js';
import { loadIndex, v8Reason, type RecordIndex } from './json-index.js';
import { DEFAULT_ROLES, type Role } from './roles.js';

export interface LlavaTurn { role: Role; text: string }
export interface LlavaRecord {
  index: number; // 0-based position in the file, counting bad records too
  id: string; // the record's "id", or its index when it has none
  imagePath?: string; // resolved against `images`, for messages; the file is read through `image`
  /** The record's (first) image as the data file names it, and the folder it must stay inside. */
  image?: { root: DataRoot; name: string };
  /** Every image of the record, in the order of its markers (one for a plain LLaVA record). */
  images?: { root: DataRoot; name: string }[];
  turns: LlavaTurn[];
  /** The record's `from` spellings, for messages about roles. */
  spellings?: string[];
  location?: ErrorLocation; // the record's start in the file, for errors reported later (PIPE9005, PIPE9007)
}
export interface SkippedRecord {
  index: number;
  code: string;
  message: string;
  location?: ErrorLocation;
  /** The error itself (with its hint), when the record is reported rather than skipped. */
  error?: PipeRuntimeError;
}

export interface LlavaJsonOptions {
  file: string;
  images: string;
  /** How the program wrote `images`, for messages; defaults to `images`. */
  imagesShown?: string;
  marker: string;
  requireImage: boolean;
  skipBadRecords: boolean;
  /** The name errors show for `file` (e.g. as written in the .pipe file); defaults to `file`. */
  displayFile?: string;
  /** `from` spelling -> role (roles.ts: roleTable); defaults to DEFAULT_ROLES. */
  roles?: ReadonlyMap<string, Role>;
  /** The most images a record may have (`max_images`); default 1. */
  maxImages?: number;
}

// ---- positions ----

/** Maps a UTF-16 offset in `text` to 1-based line and column (columns count code points). */
export function lineColAt(text: string, lineStarts: number[], offset: number): { line: number; col: number } {
  let lo = 0, hi = lineStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (lineStarts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, col: [...text.slice(lineStarts[lo]!, offset)].length + 1 };
}

/**
 * lineColAt for many increasing offsets in one pass over the text. LLaVA's own JSON files are written on
 * a single line, so counting each record's column from its line start would be quadratic.
 */
export function lineColsAt(text: string, offsets: number[]): { line: number; col: number }[] {
  let pos = 0, line = 1, col = 1;
  return offsets.map((offset) => {
    if (offset < pos) ({ line, col } = lineColAt(text, lineStartsOf(text), (pos = offset)));
    for (; pos < offset; pos++) {
      const c = text.charCodeAt(pos);
      if (c === 0x0a) (line++, (col = 1));
      else if (c < 0xdc00 || c > 0xdfff) col++; // a low surrogate ends a code point already counted
    }
    return { line, col };
  });
}

export function lineStartsOf(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

/**
 * A small JSON scanner: checks the syntax and returns the offset where each element of a top-level
 * array starts (JSON.parse gives values, not positions). On a syntax error it returns the offset of the
 * first bad character, for the messages where V8 gives no position ("Unexpected token 'x', ...").
 */
export function scanJson(text: string): { ok: true; elementStarts: number[] } | { ok: false; offset: number } {
  let i = 0;
  const starts: number[] = [];
  const fail = (): never => {
    throw new ScanError(i);
  };
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const str = () => {
    i++; // opening quote
    for (;;) {
      PLAIN.lastIndex = i; // skip ordinary characters in one go; the loop handles the rest
      PLAIN.test(text);
      i = PLAIN.lastIndex;
      if (i >= text.length) fail();
      const c = text.charCodeAt(i);
      if (c === 0x22) return void i++;
      if (c < 0x20) fail(); // raw control characters are not allowed in JSON strings
      if (c === 0x5c) {
        i++;
        if (text[i] === 'u') {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) (i += k), fail();
          i += 5;
        } else if (i < text.length && '"\\/bfnrt'.includes(text[i]!)) i++;
        else fail();
      } else i++;
    }
  };
  const PLAIN = /[^"\\\x00-\x1f]*/y;
  const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const value = (depth: number): void => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      ws();
      if (text[i] === close) return void i++;
      for (;;) {
        ws();
        if (c === '{') {
          if (text[i] !== '"') fail();
          str();
          ws();
          if (text[i] !== ':') fail();
          i++;
          value(depth + 1);
        } else {
          ws();
          if (depth === 0) starts.push(i);
          value(depth + 1);
        }
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === close) return void i++;
        else fail();
      }
    }
    if (c === '"') return str();
    NUMBER.lastIndex = i;
    if (NUMBER.test(text)) return void (i = NUMBER.lastIndex);
    for (const lit of ['true', 'false', 'null']) if (text.startsWith(lit, i)) return void (i += lit.length);
    fail();
  };
  try {
    value(0);
    ws();
    if (i < text.length) fail();
    return { ok: true, elementStarts: starts };
  } catch (e) {
    if (e instanceof ScanError) return { ok: false, offset: e.offset };
    // Nesting too deep for the call stack (JSON.parse manages it): give up on positions, not on the file.
    if (e instanceof RangeError) return { ok: false, offset: i };
    throw e;
  }
}
class ScanError {
  constructor(readonly offset: number) {}
}

// ---- reading ----

/**
 * A LLaVA data file opened for reading record by record in any order (json-index.ts: one pass finds
 * where each record lies; a record is then one positioned read). Memory does not grow with the file:
 * LLaVA-665k's single-line ~1 GB array is read as easily as ten records.
 */
export class LlavaSource {
  readonly index: RecordIndex;
  private fd: number;
  private buf = Buffer.alloc(1 << 16);
  private readonly ctx: RecordContext;
  readonly shown: string;

  /** Opens (and indexes) the file: PIPE9001 when it cannot be read, PIPE9002 when a .json file is not valid JSON. */
  constructor(readonly opts: LlavaJsonOptions, cacheDir?: string) {
    this.shown = opts.displayFile ?? opts.file;
    this.index = loadIndex(opts.file, this.shown, cacheDir);
    try {
      this.fd = fs.openSync(opts.file, 'r');
    } catch (e) {
      throw runtimeError(M.DataFileMissing, [this.shown], { file: this.shown }, `it cannot be read: ${(e as Error).message}`);
    }
    this.ctx = { opts, root: new DataRoot(opts.images, opts.imagesShown ?? opts.images), roles: opts.roles ?? new Map(Object.entries(DEFAULT_ROLES)) };
  }

  /** Records in the file, bad ones included. */
  get count(): number {
    return this.index.count;
  }

  location(i: number): ErrorLocation {
    return { file: this.shown, line: this.index.line[i]!, col: this.index.col[i]! };
  }

  /** Record i's JSON text (a .jsonl record keeps its line's leading blanks, so offsets in it are columns). */
  text(i: number): string {
    const len = this.index.length[i]!;
    if (this.buf.length < len) this.buf = Buffer.alloc(Math.max(len, this.buf.length * 2));
    // The index is only good for the bytes it was made from: a file changed since is refused, never misread.
    const st = fs.fstatSync(this.fd);
    if (st.size !== this.index.stamp.size || st.mtimeMs !== this.index.stamp.mtimeMs)
      throw runtimeError(M.DataChanged, [this.shown, 'after the run indexed it'], this.location(i), 'a dataset must not change while a run reads it; restore it, or start the run again');
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, this.buf, done, len - done, this.index.offset[i]! + done);
      if (n === 0) break;
      done += n;
    }
    return this.buf.toString('utf8', 0, done);
  }

  /** Record i read and checked (roles, images inside their folder and PNG or JPEG, markers); throws a located PipeRuntimeError. */
  record(i: number): LlavaRecord {
    const location = this.location(i);
    let text = this.text(i);
    let raw: unknown;
    if (text.charCodeAt(0) === 0xfeff) text = ' ' + text.slice(1); // a byte-order mark: a blank column, as in the index
    try {
      raw = JSON.parse(text);
    } catch (e) {
      // Only a .jsonl line can fail here: a .json file was checked whole when it was indexed.
      const reason = v8Reason(e);
      const pos = /\bat position (\d+)/.exec(String((e as Error).message));
      const scanned = scanJson(text);
      const at = pos ? Number(pos[1]) : scanned.ok ? location.col! - 1 : scanned.offset;
      const loc = { file: this.shown, line: location.line, col: [...text.slice(0, at)].length + 1 };
      throw runtimeError(M.DataBadJson, [this.shown, `record ${i} (line ${location.line}): ${reason}`], loc, this.index.kind === 'lines' ? 'each line of a .jsonl file must be one JSON record' : 'fix the JSON at this position');
    }
    return checkRecord(i, raw, location, this.ctx);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Every record of a file, in memory (the in-memory path; training streams through LlavaSource). */
export function readLlavaJson(opts: LlavaJsonOptions): { records: LlavaRecord[]; skipped: SkippedRecord[] } {
  const source = new LlavaSource(opts);
  const records: LlavaRecord[] = [];
  const skipped: SkippedRecord[] = [];
  try {
    for (let i = 0; i < source.count; i++) {
      try {
        records.push(source.record(i));
      } catch (e) {
        if (!(e instanceof PipeRuntimeError) || !opts.skipBadRecords) throw e;
        skipped.push({ index: i, code: e.code, message: e.message, location: e.location ?? source.location(i), error: e });
      }
    }
  } finally {
    source.close();
  }
  return { records, skipped };
}

/** A record error: the catalogue message with the record's id added after its index when it has one. */
export function recordError<A extends unknown[]>(def: MessageDef<A>, args: A, id: string | undefined, location: ErrorLocation, hint: string): PipeRuntimeError {
  const err = runtimeError(def, args, location, hint);
  if (id !== undefined) err.message = err.message.replace(/^record (\d+):/, (_m, n: string) => `record ${n} (id ${JSON.stringify(id)}):`);
  return err;
}

interface RecordContext {
  opts: LlavaJsonOptions;
  root: DataRoot;
  roles: ReadonlyMap<string, Role>;
}

function checkRecord(index: number, raw: unknown, location: ErrorLocation, ctx: RecordContext): LlavaRecord {
  const { opts, root } = ctx;
  const obj = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
  const givenId = obj && (typeof obj.id === 'string' || typeof obj.id === 'number') ? String(obj.id) : undefined;
  const bad = (why: string, hint = 'fix or remove the record, or set `skip_bad_records: true`') =>
    recordError(M.DataBadRecord, [index, why], givenId, location, hint);

  if (!obj) throw bad(`is ${Array.isArray(raw) ? 'an array' : raw === null ? 'null' : `a ${typeof raw}`}, not an object`);
  const convs = obj.conversations;
  if (!Array.isArray(convs)) throw bad(convs === undefined ? 'has no "conversations"' : '"conversations" is not an array');
  if (convs.length === 0) throw bad('"conversations" is empty');
  const spellings: string[] = [];
  const turns: LlavaTurn[] = convs.map((t: unknown, k) => {
    const turn = t !== null && typeof t === 'object' ? (t as Record<string, unknown>) : undefined;
    if (!turn || typeof turn.from !== 'string' || typeof turn.value !== 'string')
      throw bad(`turn ${k} is not {"from": string, "value": string}`);
    const role = ctx.roles.get(turn.from);
    if (!role) throw bad(`turn ${k} has unknown role ${JSON.stringify(turn.from)}`, `known roles are ${[...ctx.roles.keys()].join(', ')}; the dataset's \`roles:\` maps other spellings, e.g. \`roles: { assistant: ${JSON.stringify(turn.from)} }\``);
    spellings.push(turn.from);
    return { role, text: turn.value };
  });

  // "image": one name (LLaVA), or a list of names whose images go, in order, where the record's
  // markers are (multi-image records: one marker per image, in the user turns).
  const given = obj.image;
  const names = given === undefined || given === null || given === '' ? [] : Array.isArray(given) ? given : [given];
  if (names.some((n) => typeof n !== 'string' || n === '')) throw bad(Array.isArray(given) ? '"image" is a list whose items are not all file names' : '"image" is not a string (a file name, or a list of them)');
  if (Array.isArray(given) && names.length === 0) throw bad('"image" is an empty list', 'leave "image" out for a text-only record (with `require_image: false`), or name its images');
  const images = (names as string[]).map((name) => ({ root, name }));
  if (images.length) {
    if (images.length > (opts.maxImages ?? 1))
      throw recordError(M.DataTooManyImages, [index, images.length, opts.maxImages ?? 1], givenId, location, `raise the dataset's \`max_images:\` to ${images.length} (each image takes the model's image tokens), or split the record`);
    for (const { name } of images) {
      let head: Buffer;
      try {
        head = root.read(name, 8);
      } catch (e) {
        throw imageError(e, index, name, givenId, location, root);
      }
      if (!sniffImage(head)) throw recordError(M.DataImageCorrupt, [index, name, 'it is not a PNG or JPEG file'], givenId, location, 'replace the file, or set `skip_bad_records: true`');
    }
    if (Array.isArray(given)) {
      // One marker per image, in the user turns; each image's features go where its marker is.
      const markers = turns.reduce((n, t) => n + countOf(t.text, opts.marker), 0);
      const inUser = turns.filter((t) => t.role === 'user').reduce((n, t) => n + countOf(t.text, opts.marker), 0);
      if (markers !== images.length || inUser !== markers)
        throw recordError(M.DataImageMarkers, [index, images.length, opts.marker, inUser === markers ? `${markers}` : `${markers} (${markers - inUser} outside the user turns)`], givenId, location, `put one ${JSON.stringify(opts.marker)} in the user turns for each image of "image", in the order of the list`);
    } else {
      const firstUser = turns.find((t) => t.role === 'user');
      if (!firstUser || !firstUser.text.includes(opts.marker))
        throw recordError(M.DataNoImageMarker, [index, opts.marker], givenId, location, `put ${JSON.stringify(opts.marker)} where the image goes in the first user turn, or set \`image_marker:\``);
    }
  } else {
    // Without an image the marker has nothing to stand for, and require_image (the default) says every
    // record must have one: LLaVA's pretraining and instruction sets are image-text pairs.
    if (opts.requireImage) throw bad('has no "image"', 'give it an "image", or set `require_image: false` to allow text-only records');
    if (turns.some((t) => t.text.includes(opts.marker))) throw bad(`has ${JSON.stringify(opts.marker)} in a turn but no "image"`);
  }
  const image = images[0];
  return { index, id: givenId ?? String(index), ...(image ? { imagePath: path.resolve(opts.images, image.name), image, images } : {}), turns, spellings, location };
}

function countOf(text: string, marker: string): number {
  let n = 0;
  for (let at = text.indexOf(marker); at >= 0; at = text.indexOf(marker, at + marker.length)) n++;
  return n;
}

/** A failure to read a record's image as a located error: PIPE9050 outside the root, PIPE9004 missing, else PIPE9005. */
function imageError(e: unknown, index: number, name: string, id: string | undefined, location: ErrorLocation, root: DataRoot): PipeRuntimeError {
  if (e instanceof ConfinementError) {
    if (e.verdict.kind === 'refused')
      return recordError(M.DataPathOutside, [index, name, e.verdict.why], id, location, `a data file may only name files inside its images folder "${root.shown}" (\`images:\`); move the file there, or point \`images:\` at the folder that holds it`);
    const looked = `looked for ${path.resolve(root.dir, name)} (\`images:\` is "${root.shown}")`;
    return recordError(M.DataImageMissing, [index, name], id, location, e.verdict.why === 'does not exist' ? looked : `it ${e.verdict.why}; ${looked}`);
  }
  return recordError(M.DataImageCorrupt, [index, name, `cannot read it: ${(e as Error).message}`], id, location, 'replace the file, or set `skip_bad_records: true`');
}

/** Where a record's image is, and what its errors name: enough to load it in another thread. */
export interface ImageJob {
  root: { dir: string; shown: string };
  name: string;
  index: number;
  /** The record's own id, when it has one. */
  id?: string;
  location: ErrorLocation;
}

/** The jobs of a record's images, in order. */
export function imageJobs(record: LlavaRecord): ImageJob[] {
  const id = record.id === String(record.index) ? undefined : record.id;
  const location = record.location ?? { file: record.imagePath ?? '?' };
  return (record.images ?? (record.image ? [record.image] : [])).map(({ root, name }) => ({ root: { dir: root.dir, shown: root.shown }, name, index: record.index, id, location }));
}

/** Reads (through a DataRoot: confined at the open) and decodes one image; a failure is PIPE9050 / 9004 / 9005 at the record. */
export function loadImage(job: ImageJob, root: DataRoot = new DataRoot(job.root.dir, job.root.shown)): RgbImage {
  let bytes: Buffer;
  try {
    bytes = root.read(job.name);
  } catch (e) {
    throw imageError(e, job.index, job.name, job.id, job.location, root);
  }
  try {
    return decodeImage(bytes);
  } catch (e) {
    throw recordError(M.DataImageCorrupt, [job.index, job.name, (e as Error).message], job.id, job.location, 'replace the file, or set `skip_bad_records: true`');
  }
}

/** Reads and decodes a record's (first) image through its DataRoot; a failure is PIPE9050 / 9004 / 9005 at the record. */
export function loadRecordImage(record: LlavaRecord): RgbImage {
  if (!record.image) throw new Error(`record ${record.index} has no image`);
  return loadImage(imageJobs(record)[0]!, record.image.root);
}

/** Every image of a record, decoded, in order. */
export function loadRecordImages(record: LlavaRecord): RgbImage[] {
  const roots = (record.images ?? (record.image ? [record.image] : [])).map((x) => x.root);
  return imageJobs(record).map((job, k) => loadImage(job, roots[k]));
}

/**
 * Decodes every record's image now rather than during training, so a corrupt image stops the run (or is
 * skipped) before the first step. Returns the records that decode and the ones that do not.
 */
export function validateImages(records: LlavaRecord[], skipBadRecords: boolean): { records: LlavaRecord[]; skipped: SkippedRecord[] } {
  const good: LlavaRecord[] = [];
  const skipped: SkippedRecord[] = [];
  for (const r of records) {
    if (!r.image) {
      good.push(r);
      continue;
    }
    try {
      loadRecordImages(r);
      good.push(r);
    } catch (e) {
      if (!(e instanceof PipeRuntimeError) || !skipBadRecords) throw e;
      skipped.push({ index: r.index, code: e.code, message: e.message, location: r.location, error: e });
    }
  }
  return { records: good, skipped };
}
