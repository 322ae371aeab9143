// Trust in custom code belongs to the person running pipec, not to the program: `trust: true` in a .pipe
// only asks for its module to be run. pipec runs a module when that exact code is trusted:
//   - `pipec trust FILE.pipe` records each module's content hash in the user's trust folder (outside any
//     project: $PIPEC_TRUST_DIR, else $XDG_CONFIG_HOME/pipec/trust, else ~/.config/pipec/trust), like
//     direnv's `allow`; any change to any of the module's files gives another hash, which is not trusted;
//   - `--trust` (run, eval, generate) trusts the modules the program names for this process only.
//
// As with data confinement (runtime/data/confine.ts), the decision is made in one place, `decideModule`:
// it reads the module's files from disk (only reads), checks that they stay in the program's folder,
// hashes them, compares the hash with the one graph.json recorded at compile time and with the trust
// the user granted. runtime/custom.ts calls it at the last moment, right before importing, and imports
// exactly the text that was hashed (transpiled or copied into a cache), never the files again.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { confineResolved, confineWritten, contentHash, diskFs, shortHash, type CodeFile } from '../compiler/check/code-files.js';
import { resolveModule, tsModuleClosure } from '../compiler/check/custom-module.js';
import type { ComponentDef } from '../compiler/ir/graph.js';
import { M, runtimeError } from './errors.js';

/** The file system as the decision reads it (compiler/check/code-files.ts): text, existence, links resolved. */
export { diskFs };

/** The user's trust folder: $PIPEC_TRUST_DIR (tests point it at a temp folder), $XDG_CONFIG_HOME/pipec/trust, ~/.config/pipec/trust. */
export function trustDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['PIPEC_TRUST_DIR']) return path.resolve(env['PIPEC_TRUST_DIR']);
  const config = env['XDG_CONFIG_HOME'] ? path.resolve(env['XDG_CONFIG_HOME']) : path.join(os.homedir(), '.config');
  return path.join(config, 'pipec', 'trust');
}

/** What a trust record holds: the hash it is keyed by, and for the reader what it was granted for. */
export interface TrustRecord {
  format: 'pipec.trust';
  version: 1;
  hash: string;
  class: string;
  /** The module's entry file (absolute) and every file with its own sha256, when granted. */
  module: string;
  files: { path: string; sha256: string }[];
  program: string;
  granted: string;
}

const recordFile = (dir: string, hash: string) => path.join(dir, `${hash.replace(/^sha256:/, '')}.json`);

/** Whether the user has recorded trust in code with this content hash. A record that does not parse is no trust. */
export function isTrusted(hash: string, dir = trustDir()): boolean {
  try {
    const rec = JSON.parse(fs.readFileSync(recordFile(dir, hash), 'utf8')) as Partial<TrustRecord>;
    return rec.format === 'pipec.trust' && rec.hash === hash;
  } catch {
    return false;
  }
}

/** Writes a trust record (atomically; the folder is made private to the user). Returns its file. */
export function recordTrust(rec: TrustRecord, dir = trustDir()): string {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = recordFile(dir, rec.hash);
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
    return file;
  } catch (e) {
    throw runtimeError(M.TrustStoreUnusable, [dir, (e as Error).message], undefined, 'set PIPEC_TRUST_DIR to a folder you can write, or use --trust for one run');
  }
}

/** Removes the record for `hash`; true when there was one. */
export function revokeTrust(hash: string, dir = trustDir()): boolean {
  const file = recordFile(dir, hash);
  if (!fs.existsSync(file)) return false;
  fs.rmSync(file);
  return true;
}

/** What the CLI decided for this process: `--trust` given, and how to name the program in hints. */
let session: TrustOptions = {};
export function setSessionTrust(o: TrustOptions): void {
  session = { ...o };
}

/** A module the decision let through: its files as read (and hashed), the entry among them. */
export interface CodeToRun {
  className: string;
  /** The module as graph.json names it (relative to the program's folder). */
  module: string;
  entry: CodeFile;
  files: CodeFile[];
  hash: string;
}

export interface TrustOptions {
  /** Trust the program's modules this once (`--trust`); otherwise a recorded trust is needed. */
  trust?: boolean;
  /** How to name the program in the hint's commands (the .pipe file, or the graph / run folder). */
  program?: string;
}

const fileSha = (f: CodeFile) => createHash('sha256').update(f.text, 'utf8').digest('hex');

/**
 * The module's code, read now from `root` (the program's folder), after every check: the path stays in
 * the folder, every file it imports exists and stays in it too, the content hash is the one the graph
 * recorded at compile time, and the user trusts that hash (or `--trust` was given). Throws the
 * runtime error that says which check failed; reads, never imports.
 */
export function decideModule(c: ComponentDef, root: string, given: TrustOptions = {}): CodeToRun {
  const o = { ...session, ...given };
  const spec = c.custom!;
  const where = { file: spec.module ?? c.name };
  if (!spec.module) throw runtimeError(M.CustomNoModule, [spec.class], where, 'give the component a TypeScript half (`module:`) and compile again, or train the exported PyTorch program');
  if (!spec.hash) throw runtimeError(M.CustomNoHash, [spec.module], where, 'compile the program again with this pipec (`pipec compile`): it records the files and their hash');
  const written = confineWritten(spec.module, root, root, diskFs);
  if (written.kind === 'refused') throw runtimeError(M.CustomPathOutsideAtRun, [spec.module, written.why], where);
  const entry = resolveModule(path.resolve(root, spec.module), diskFs);
  if (!entry) throw runtimeError(M.CustomLoadFailed, [spec.module, 'the file does not exist'], where);
  const real = confineResolved(entry, root, diskFs);
  if (real.kind === 'refused') throw runtimeError(M.CustomPathOutsideAtRun, [spec.module, real.why], where);
  const closure = tsModuleClosure(entry, root, diskFs);
  const outside = closure.problems.find((p) => p.kind === 'outside');
  if (outside) throw runtimeError(M.CustomPathOutsideAtRun, [spec.module, `imports "${outside.spec}" (in ${outside.file.rel}), which ${outside.why}`], where);
  const missing = closure.problems[0];
  if (missing) throw runtimeError(M.CustomLoadFailed, [spec.module, `${missing.file.rel} imports "${missing.spec}", which does not exist`], where);
  const hash = contentHash(closure.files);
  if (hash !== spec.hash)
    throw runtimeError(M.CustomCodeChanged, [spec.module, shortHash(spec.hash), shortHash(hash)], where,
      `compile the program again (a graph.json is only run with the code it was compiled with), then trust the new code: ${closure.files.map((f) => f.rel).join(', ')}`);
  const program = o.program ?? 'PROGRAM.pipe (the program this graph was compiled from)';
  if (!(o.trust || isTrusted(hash))) {
    const files = closure.files.map((f) => `${f.rel} (sha256 ${fileSha(f).slice(0, 16)})`).join(', ');
    throw runtimeError(M.CustomNotTrustedAtRun, [spec.module, spec.class], where,
      `it would run ${files}; content hash ${hash}. If you have read them and trust them: \`pipec trust ${program}\` records that for these exact files (in ${trustDir()}), or add --trust to trust them for this run only`);
  }
  return { className: spec.class, module: spec.module, entry: closure.files.find((f) => f.abs === entry)!, files: closure.files, hash };
}

/** The record `pipec trust` writes for code the checker read. */
export function trustRecordFor(c: ComponentDef, files: CodeFile[], hash: string, program: string): TrustRecord {
  return {
    format: 'pipec.trust', version: 1, hash, class: c.custom!.class, module: files[0]?.abs ?? '',
    files: files.map((f) => ({ path: f.abs, sha256: fileSha(f) })), program: path.resolve(program), granted: new Date().toISOString(),
  };
}
