// Quiet test output: what libraries write to stderr inside the test process (tfjs's "Hi, looks like you
// are running TensorFlow.js in Node.js" banner, a backend's console.warn, the runtime's own warnings) is
// held back and shown only when the test it belongs to fails, or when a hook fails and its tests never
// ran. Tests print their figures with console.log, to stdout, which this leaves alone; pipec children
// are already captured by the helpers that start them (cli.ts, python.ts).
//
// Lines that native code writes to file descriptor 2 itself (libtensorflow's absl start-up lines, Dawn's
// limit warnings and its uncaptured-error text) bypass process.stderr and cannot be held from here.
//
// Loaded by both mocha configurations (.mocharc.json, .mocharc.e2e.json) as a root hook plugin; in
// parallel mode each worker loads it, and holds its own output.
import type { Context, Suite } from 'mocha';

const write = process.stderr.write.bind(process.stderr);
let held: string[] = [];

process.stderr.write = ((chunk: string | Uint8Array, encoding?: BufferEncoding | ((e?: Error | null) => void), done?: (e?: Error | null) => void): boolean => {
  held.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString(typeof encoding === 'string' ? encoding : 'utf8'));
  const callback = typeof encoding === 'function' ? encoding : done;
  if (callback) process.nextTick(callback);
  return true;
}) as typeof process.stderr.write;

/** Writes what was held, under a line naming whose it is, and forgets it. */
function release(whose: string): void {
  const text = held.join('');
  held = [];
  if (!text.trim()) return;
  write(`\n--- stderr written during ${whose} ---\n${text}${text.endsWith('\n') ? '' : '\n'}--- end of that stderr ---\n`);
}

/** A test that neither passed, failed nor was skipped never ran: a hook before it failed. */
function someTestDidNotPass(suite: Suite): boolean {
  return suite.tests.some((t) => t.state === 'failed' || (t.state === undefined && !t.isPending())) || suite.suites.some(someTestDidNotPass);
}

// A process that ends with output still held (a crash, an unhandled rejection): show it.
process.on('exit', (code) => {
  if (code !== 0) release('a run that ended with an error');
});

/** mocha root hook plugin (the configurations' `require`). */
export const mochaHooks = {
  afterEach(this: Context): void {
    const test = this.currentTest;
    if (test?.state === 'failed') release(`the failed test "${test.fullTitle()}"`);
    else held = [];
  },
  afterAll(this: Context): void {
    let root = this.test?.parent;
    while (root?.parent) root = root.parent;
    if (root && someTestDidNotPass(root)) release('a failed hook or test (its tests did not all pass)');
    else held = [];
  },
};
