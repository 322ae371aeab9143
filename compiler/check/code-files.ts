// The files a custom component's code consists of, read as text and never run: where a path written in
// a program may lead (confinement), the source masked so that only code is searched, and the content
// hash that trust is keyed by. The checker (custom.ts, custom-python.ts) and the runtime (runtime/trust.ts)
// both decide with these functions, so what `pipec check` accepts is what `pipec run` re-checks before
// it imports.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** What these functions read: the checker's Host, or the file system at run time. */
export interface CodeFs {
  readFile(p: string): string | undefined;
  exists(p: string): boolean;
  isDirectory(p: string): boolean;
  /** The path after symbolic links, or undefined when it does not exist (absent: links are not followed). */
  realPath?(p: string): string | undefined;
}

/** The file system as it is on disk (the compiler's host layers its editor overlay on it; the runtime reads it as is). */
export const diskFs: Required<CodeFs> = {
  readFile: (p) => {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return undefined;
    }
  },
  exists: (p) => fs.existsSync(p),
  isDirectory: (p) => {
    try {
      return fs.statSync(p).isDirectory();
    } catch {
      return false;
    }
  },
  realPath: (p) => {
    try {
      return fs.realpathSync.native(p);
    } catch {
      return undefined;
    }
  },
};

export type PathVerdict = { kind: 'inside'; abs: string } | { kind: 'refused'; why: string };

/**
 * The one decision about a path a program writes for its code (`module:`, `python:`): it must stay in the
 * program's folder `root`. Judged on the text first (absolute, `..` climbing above the root), then, when
 * `fs` resolves links, on where the path really leads. Reads nothing but link targets.
 */
export function confineWritten(written: string, from: string, root: string, fs: CodeFs): PathVerdict {
  if (written === '' || written.includes('\0')) return { kind: 'refused', why: 'is not a usable path' };
  if (path.isAbsolute(written) || path.win32.isAbsolute(written) || /^[A-Za-z]:/.test(written))
    return { kind: 'refused', why: "is an absolute path; custom code must live in the program's folder" };
  const abs = path.resolve(from, written);
  if (!within(root, abs)) return { kind: 'refused', why: `climbs out of the program's folder with ".."` };
  return confineResolved(abs, root, fs);
}

/** A resolved path (a file the code consists of) against the program's folder, links followed. */
export function confineResolved(abs: string, root: string, fs: CodeFs): PathVerdict {
  if (!within(root, abs)) return { kind: 'refused', why: "is outside the program's folder" };
  if (!fs.realPath) return { kind: 'inside', abs };
  const realRoot = fs.realPath(root) ?? root;
  // a path that does not exist (yet) is judged by its deepest existing folder: a link there leads out too
  let probe = abs;
  let real = fs.realPath(probe);
  while (real === undefined && path.dirname(probe) !== probe) {
    probe = path.dirname(probe);
    real = fs.realPath(probe);
  }
  if (real !== undefined && !within(realRoot, real)) return { kind: 'refused', why: "leads outside the program's folder through a symbolic link" };
  return { kind: 'inside', abs };
}

export function within(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** `p` relative to `root` with `/` separators (how graph.json and messages name files). */
export function relTo(root: string, p: string): string {
  return path.relative(root, p).split(path.sep).join('/');
}

/**
 * The source with comments blanked and string contents blanked (quotes kept), every character in its
 * place: searches run on the mask, and an offset in it is the same offset in the source.
 */
export function maskSource(text: string, lang: 'ts' | 'py'): string {
  const out = text.split('');
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (lang === 'ts' && c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      blank(i, end < 0 ? text.length : end);
      i = end < 0 ? text.length : end;
    } else if (lang === 'ts' && c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? text.length : end + 2;
      blank(i, stop);
      i = stop;
    } else if (lang === 'py' && c === '#') {
      const end = text.indexOf('\n', i);
      blank(i, end < 0 ? text.length : end);
      i = end < 0 ? text.length : end;
    } else if (c === '"' || c === "'" || (lang === 'ts' && c === '`')) {
      const triple = lang === 'py' && text.startsWith(c.repeat(3), i);
      const close = triple ? c.repeat(3) : c;
      let j = i + close.length;
      while (j < text.length) {
        if (text[j] === '\\') j += 2;
        else if (text.startsWith(close, j)) break;
        else if (!triple && c !== '`' && text[j] === '\n') break; // an unterminated one-line string ends at the line
        else j++;
      }
      blank(i + close.length, Math.min(j, text.length));
      i = Math.min(j + close.length, text.length);
    } else i++;
  }
  return out.join('');
}

/** One file of a component's code. */
export interface CodeFile {
  abs: string;
  /** Relative to the program's folder, `/` separators. */
  rel: string;
  text: string;
}

/**
 * The content hash trust is keyed by: sha256 over the files' paths (relative to the program's folder)
 * and their text, in path order. Any change to any file, a file added to the closure or one renamed,
 * gives another hash.
 */
export function contentHash(files: readonly CodeFile[]): string {
  const h = createHash('sha256');
  for (const f of [...files].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))) {
    h.update(`${f.rel}\0${Buffer.byteLength(f.text, 'utf8')}\0`);
    h.update(f.text, 'utf8');
  }
  return `sha256:${h.digest('hex')}`;
}

/** A short form of a content hash for messages (the full one is in graph.json and the trust record). */
export const shortHash = (hash: string): string => hash.replace(/^sha256:/, '').slice(0, 16);
