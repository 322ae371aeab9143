// Multi-threaded wasm under Node. Stock tfjs-backend-wasm runs one thread there: its
// WASM_HAS_MULTITHREAD_SUPPORT flag is hard-wired to false under Node (tfjs issue 3830) because it starts
// its pthread workers from Blob URLs, which Node's worker_threads cannot load. The Emscripten glue it
// ships does support Node workers, so we hand it files instead of Blob URLs: the worker script and the
// main script it imports, written once into a cache folder. XNNPACK then splits each matmul, convolution
// and elementwise op over a pthreadpool.
//
// Threads do not change results: XNNPACK gives each output tile to one thread, which reduces it in the
// same order as the single-threaded build (test/runtime-wasm-threads.test.ts checks losses bit for bit).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileAtomic } from '../weights/atomic.js';

const require = createRequire(import.meta.url);
/** Emscripten pre-creates this many workers (tfjs's cc/BUILD); XNNPACK's pool cannot be larger. */
const MAX_THREADS = 8;

/**
 * Below this many multiply-adds per micro-batch (parameters x batch x sequence length) a thread pool
 * loses: every op wakes the pool's workers (Atomics.wait/notify between Node workers), and a small model
 * runs thousands of small ops per step. Measured here on 2 cores (npm run bench:runtime): the
 * quickstart (0.5 G) ran ~20% slower with 2 threads, the 7.25M reference LM (7.4 G) 7-13% faster (two runs).
 */
export const THREADS_MIN_WORK = 2e9;

/** The size a micro-batch is judged by: multiply-adds, roughly parameters x batch x sequence length. */
export function microBatchWork(params: number, batch: number, length: number): number {
  return params * batch * length;
}

/**
 * Threads for the wasm backend: PIPEC_WASM_THREADS when set; else one for a small workload (`work`,
 * multiply-adds per micro-batch, when the caller knows it) and one per core the process may use otherwise.
 */
export function wasmThreadsWanted(work?: number): number {
  const env = process.env.PIPEC_WASM_THREADS;
  if (env === undefined || env === '') return work !== undefined && work < THREADS_MIN_WORK ? 1 : Math.min(os.availableParallelism(), MAX_THREADS);
  const n = Math.floor(Number(env));
  return Number.isFinite(n) && n >= 1 ? Math.min(n, MAX_THREADS) : 1;
}

function cacheDir(pkgDir: string): string {
  // node_modules/.cache beside the package, as other tools do; the temp folder where that is read-only
  for (const base of [path.join(pkgDir, '..', '..', '.cache'), os.tmpdir()]) {
    try {
      fs.mkdirSync(path.join(base, 'pipec-wasm'), { recursive: true });
      fs.accessSync(path.join(base, 'pipec-wasm'), fs.constants.W_OK);
      return path.join(base, 'pipec-wasm');
    } catch {
      /* try the next */
    }
  }
  throw new Error('no writable folder for the wasm worker scripts');
}

/** Writes `text` under a name derived from its hash, so versions never clash and a torn write never loads. */
function writeOnce(dir: string, stem: string, text: string): string {
  const file = path.join(dir, `${stem}-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.cjs`);
  if (!fs.existsSync(file)) writeFileAtomic(file, text);
  return file;
}

/** The worker and main scripts as files; returns the worker's, which resolves its Blob URL to the main script's path. */
function workerScript(): string {
  const pkgDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  const out = path.join(pkgDir, 'wasm-out');
  const factory = require(path.join(out, 'tfjs-backend-wasm-threaded-simd.js')) as { toString(): string };
  const { wasmWorkerContents } = require(path.join(out, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  const dir = cacheDir(pkgDir);
  // What tfjs puts in its Blob: the factory bound to the name the worker calls.
  const main = writeOnce(dir, 'main', `var WasmBackendModuleThreadedSimd = ${factory.toString()};\n`);
  // The worker's source is a template-literal string whose "\n" escapes became newlines; tfjs re-escapes
  // them the same way before making its Blob.
  return writeOnce(
    dir,
    'worker',
    `URL.createObjectURL = () => ${JSON.stringify(main)}; URL.revokeObjectURL = () => {};\n` + wasmWorkerContents.replace(/\n/g, '\\n'),
  );
}

interface EmscriptenWorker {
  unref(): void;
}
interface ThreadedModule {
  PThread?: { runningWorkers: EmscriptenWorker[]; unusedWorkers: EmscriptenWorker[] };
}

/**
 * Runs `start` (which creates the wasm backend) with the threaded build selected, for `threads` threads,
 * and returns what it returns. Throws what `start` throws, or why the worker scripts could not be written.
 */
export async function startThreadedWasm(
  threads: number,
  setThreadsCount: (n: number) => void,
  start: () => Promise<boolean>,
): Promise<boolean> {
  const worker = workerScript();
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  setThreadsCount(threads);
  // Two things the glue reads only while the module starts: the worker's URL (a Blob URL in tfjs, a file
  // here) and the core count, which tfjs halves (it assumes two hyper-threads per core) and uses as a cap.
  const createObjectURL = URL.createObjectURL;
  const cpus = os.cpus;
  const nodeOs = require('node:os') as typeof os;
  URL.createObjectURL = () => worker;
  nodeOs.cpus = () => Array.from({ length: 2 * threads }, () => cpus()[0]!);
  try {
    const ok = await start();
    // Idle pthreads must not keep the process alive after the command has finished.
    const pt = (tf.backend() as unknown as { wasm?: ThreadedModule }).wasm?.PThread;
    for (const w of [...(pt?.runningWorkers ?? []), ...(pt?.unusedWorkers ?? [])]) w.unref();
    return ok;
  } finally {
    URL.createObjectURL = createObjectURL;
    nodeOs.cpus = cpus;
  }
}
