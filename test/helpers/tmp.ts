// Temporary folders for tests. Every folder a test makes lives under one root per test process, made on
// first use and removed when the run ends: by mocha's root hook (.mocharc.json requires this file; in
// parallel mode it runs after each file, and the next file makes a new root) or, for a run started
// without the config (`mocha --no-config FILE`), when the process exits. Child processes started by the
// helpers (cli.ts, python.ts) get the root as TMPDIR, so what they put in "the temp folder" (torchrun's
// logs, Python's tempfile) goes with it. Call tmpDir() inside a hook or a test, never in a describe body:
// a describe body runs when the file loads, even for a suite that is then skipped or filtered out.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const BASE = os.tmpdir();
let root: string | undefined;

/** This process's root folder for test files (made now if it does not exist yet). */
export function tmpRoot(): string {
  if (!root || !fs.existsSync(root)) root = fs.mkdtempSync(path.join(BASE, 'pipec-test-'));
  return root;
}

/** A new empty folder under the root, named `name-XXXXXX`. */
export function tmpDir(name = 'tmp'): string {
  return fs.mkdtempSync(path.join(tmpRoot(), `${name}-`));
}

/** Removes the root and everything under it. */
export function removeTmpRoot(): void {
  if (root) fs.rmSync(root, { recursive: true, force: true });
  root = undefined;
}

/** The environment for a child process: its temporary files go under the root too. */
export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const dir = tmpRoot();
  return { ...process.env, TMPDIR: dir, TMP: dir, TEMP: dir, ...extra };
}

// Trust in custom code (runtime/trust.ts) is recorded per user; the tests record theirs in a folder of
// their own, never in the user's ~/.config/pipec/trust, and pipec children inherit it.
const TRUST_DIR = path.join(BASE, `pipec-test-trust-${process.pid}`);
process.env.PIPEC_TRUST_DIR = TRUST_DIR;

process.on('exit', () => {
  removeTmpRoot();
  fs.rmSync(TRUST_DIR, { recursive: true, force: true });
});

/** mocha root hook plugin (.mocharc.json `require`). */
export const mochaHooks = {
  afterAll(): void {
    removeTmpRoot();
  },
};
