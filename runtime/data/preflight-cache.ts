// The data pre-flight's cache, RUN/preflight.json. It lives in the run folder because that is where the
// check repeats: `pipec run --resume` after a crash checks the same data again, and the cache then
// lives and dies with the run it vouches for (nothing global to go stale, nothing written next to the
// data, which may be shared or read-only). A fresh run folder pays for one full pass, as it should.
//
// An entry is found by a key over everything the outcome depends on except the data file's content:
// the pipeline's own code, the dataset's arguments, the resolved template, the tokenizer's files, the
// llm's vocab, image tokens and max_length. It is valid while the data file is the same -- same size and
// mtime, or, when the mtime moved, the same SHA-256 -- and every image it named has the size and mtime
// it had. A hit skips the work, not the safety: training still reads every file through confine.ts.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Graph } from '../../compiler/ir/graph.js';
import { writeFileAtomic } from '../weights/atomic.js';
import { sha256File } from '../weights/file-hash.js';
import type { DatasetSpec } from './pipeline.js';
import type { Failure } from './preflight.js';
import { VocabTokenizer, type TextTokenizer } from './vocab-tokenizer.js';

const FORMAT = 'pipec.preflight';
const VERSION = 2;
/** Entries kept per run folder (one per distinct stage pass; more only when the data changes). */
const MAX_ENTRIES = 32;

export interface CachedPass {
  records: number;
  lengthCounts: [number, number][];
  failures: Failure[];
  /** Per record its signed length, 0 when it fails (pipeline.ts: recordLengths): which records the trainer reads. */
  recordLengths?: Int32Array;
}

/** A pass as the cache file holds it: the per-record lengths as base64 of their little-endian bytes. */
type StoredPass = Omit<CachedPass, 'recordLengths'> & { recordLengths64?: string };

function toStored(p: CachedPass): StoredPass {
  const { recordLengths, ...rest } = p;
  return recordLengths ? { ...rest, recordLengths64: Buffer.from(recordLengths.buffer, recordLengths.byteOffset, recordLengths.byteLength).toString('base64') } : rest;
}

function fromStored(p: StoredPass): CachedPass {
  const { recordLengths64, ...rest } = p;
  if (recordLengths64 === undefined) return rest;
  const bytes = Buffer.from(recordLengths64, 'base64');
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return { ...rest, recordLengths: new Int32Array(copy.buffer, 0, bytes.length >> 2) };
}

interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
  sha256?: string;
}

interface Entry {
  key: string;
  data?: FileStamp;
  /** Per image folder: [name, size, mtimeMs] of each image the records name. */
  images: { root: string; files: [string, number, number][] }[];
  result: StoredPass;
}

/** The cache key of a dataset pass (everything but the data file's and images' content). */
export function specKey(graph: Graph, spec: DatasetSpec, tokenizerFile: string | undefined, tokenizer: TextTokenizer): string {
  const d = graph.datasets.find((x) => x.name === spec.name);
  const { tokenizer: _t, source, ...rest } = spec;
  const parts = {
    format: FORMAT, version: VERSION, code: codeHash(), dataset: d && { constructor: d.constructor, attrs: d.attrs },
    spec: rest, source: source.kind === 'llava' ? { ...source.read, roles: [...(source.read.roles ?? [])] } : { ...source, normalise: !!source.normalise },
    tokenizer: tokenizerHash(tokenizerFile, tokenizer),
  };
  return sha256(JSON.stringify(parts));
}

export class PreflightCache {
  private entries: Entry[] = [];
  private changed = false;

  private constructor(readonly file: string) {}

  /** Reads the cache file; a missing or unreadable one is an empty cache (it is only a cache). */
  static open(file: string): PreflightCache {
    const c = new PreflightCache(file);
    try {
      const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { format?: string; version?: number; entries?: Entry[] };
      if (j.format === FORMAT && j.version === VERSION && Array.isArray(j.entries)) c.entries = j.entries;
    } catch {
      // no cache yet, or a torn one from another version: start empty
    }
    return c;
  }

  lookup(key: string): CachedPass | undefined {
    const e = this.entries.find((x) => x.key === key);
    if (!e) return undefined;
    if (e.data) {
      const st = fs.statSync(e.data.path, { throwIfNoEntry: false });
      if (!st || st.size !== e.data.size) return undefined;
      if (st.mtimeMs !== e.data.mtimeMs) {
        // touched: the same content is still a hit
        if (hashFile(e.data.path) !== e.data.sha256) return undefined;
        e.data.mtimeMs = st.mtimeMs;
        this.changed = true;
      }
    }
    for (const g of e.images)
      for (const [name, size, mtimeMs] of g.files) {
        const st = fs.statSync(path.resolve(g.root, name), { throwIfNoEntry: false });
        if (!st || st.size !== size || st.mtimeMs !== mtimeMs) return undefined;
      }
    return fromStored(e.result);
  }

  /** The data file's size, mtime and content hash before a pass reads it. */
  fingerprint(file: string): FileStamp | undefined {
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (!st?.isFile()) return undefined;
    return { path: file, size: st.size, mtimeMs: st.mtimeMs, sha256: hashFile(file) };
  }

  /** Keeps a pass's outcome, unless its data file changed while it was read (then the outcome may not match the file). */
  store(key: string, result: CachedPass, dataFile: string | undefined, before: FileStamp | undefined, images: { root: string; name: string }[]): void {
    if (dataFile) {
      const st = fs.statSync(dataFile, { throwIfNoEntry: false });
      if (!before || !st || st.size !== before.size || st.mtimeMs !== before.mtimeMs) return;
    }
    const byRoot = new Map<string, Map<string, [string, number, number]>>();
    for (const { root, name } of images) {
      const files = byRoot.get(root) ?? new Map<string, [string, number, number]>();
      byRoot.set(root, files);
      if (files.has(name)) continue;
      const st = fs.statSync(path.resolve(root, name), { throwIfNoEntry: false });
      if (!st) return; // gone since it was read: do not vouch for it
      files.set(name, [name, st.size, st.mtimeMs]);
    }
    this.entries = this.entries.filter((e) => e.key !== key);
    this.entries.push({ key, data: before, images: [...byRoot].map(([root, files]) => ({ root, files: [...files.values()] })), result: toStored(result) });
    if (this.entries.length > MAX_ENTRIES) this.entries.splice(0, this.entries.length - MAX_ENTRIES);
    this.changed = true;
  }

  save(): void {
    if (!this.changed || !fs.existsSync(path.dirname(this.file))) return;
    writeFileAtomic(this.file, JSON.stringify({ format: FORMAT, version: VERSION, entries: this.entries }) + '\n');
    this.changed = false;
  }
}

function sha256(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/** SHA-256 of a file, or undefined when it cannot be read. */
function hashFile(file: string): string | undefined {
  try {
    return sha256File(file);
  } catch {
    return undefined;
  }
}

let code: string | undefined;
/** The compiled data pipeline itself (this folder's modules): a change to how records are checked is a miss. */
function codeHash(): string {
  if (code === undefined) {
    const dir = path.dirname(fileURLToPath(import.meta.url));
    const h = createHash('sha256');
    for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.js')).sort()) h.update(f).update(fs.readFileSync(path.join(dir, f)));
    code = h.digest('hex');
  }
  return code;
}

/** The tokenizer's files (tokenizer.json and the tokenizer_config.json beside it), or the generated vocabulary. */
function tokenizerHash(file: string | undefined, tokenizer: TextTokenizer): string {
  if (file) {
    const config = path.join(path.dirname(file), 'tokenizer_config.json');
    return `${hashFile(file)}:${fs.existsSync(config) ? hashFile(config) : '-'}`;
  }
  if (tokenizer instanceof VocabTokenizer) return sha256(tokenizer.vocab.join('\n'));
  return `uncached:${Math.random()}`; // a tokenizer of unknown origin: never a hit
}
