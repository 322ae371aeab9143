// Stage 5 of the data pipeline (decode, resize, normalise) in worker threads, so the images of the
// next batches are ready while the main thread runs the training step. Each job names an image by its
// data root and name, and the worker opens it through a DataRoot (confine.ts): the confinement decision
// is made in the worker, at the open, exactly as in the main thread. Results come back as transferred
// Float32Arrays; a failure comes back as the located PipeRuntimeError the main thread would have made.
// Jobs go to the worker with the fewest in flight. With no workers (PIPEC_DATA_WORKERS=0) jobs run
// in line on the main thread, with the same results.
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { M, PipeRuntimeError, runtimeError } from '../errors.js';
import type { PreprocessOptions } from './images.js';
import type { ImageJob } from './llava-json.js';
import { imagePixels } from './pipeline.js';
import { type DrawJob, drawJobPixels } from './synthetic-shapes.js';

export interface WorkerReply {
  id: number;
  pixels?: Float32Array;
  error?: { code: string; message: string; location?: PipeRuntimeError['location']; hint?: string };
  crash?: string;
}

/**
 * The Node options a worker inherits: the process's, less those that only make sense for code given on
 * the command line (`node --input-type=module -e "..."`, as a library user may start it), which make a
 * worker started from a file fail ("--input-type can only be used with string input").
 */
export function workerExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--input-type=') || a.startsWith('--eval=') || a.startsWith('--print=')) continue;
    if (['--input-type', '-e', '--eval', '-p', '--print'].includes(a)) {
      i++; // and its value
      continue;
    }
    out.push(a);
  }
  return out;
}

/** Workers by default: one per core but one (the main thread trains), at least 1, at most 4; PIPEC_DATA_WORKERS overrides. */
export function defaultWorkers(): number {
  const env = process.env.PIPEC_DATA_WORKERS;
  if (env !== undefined && /^\d+$/.test(env)) return Number(env);
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(4, cores - 1));
}

export class ImagePool {
  private readonly workers: { w: Worker; busy: number }[] = [];
  private readonly pending = new Map<number, { resolve: (p: Float32Array) => void; reject: (e: unknown) => void; worker: number }>();
  private nextId = 0;
  private broken: Error | undefined;

  /** Workers are started at the first job, so a run without images starts none. */
  constructor(readonly size: number = defaultWorkers()) {}

  private startWorkers(): void {
    for (let i = 0; i < this.size; i++) {
      const w = new Worker(new URL('./image-worker.js', import.meta.url), { execArgv: workerExecArgv(process.execArgv) });
      w.on('message', (r: WorkerReply) => this.reply(r));
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => code !== 0 && this.fail(new Error(`a worker exited with code ${code}`)));
      w.unref(); // held only while it has jobs (run, reply): an idle pool left open never keeps the process alive
      this.workers.push({ w, busy: 0 });
    }
  }

  /** The pixels of one image, preprocessed; rejects with the located error of the image. */
  run(job: ImageJob, preprocess: PreprocessOptions): Promise<Float32Array> {
    return this.send({ job, preprocess }, () => imagePixels(job, preprocess, 'train')!);
  }

  /** A synthetic record's drawing, normalised: drawn in a worker so the trainer's thread only trains. */
  draw(draw: DrawJob): Promise<Float32Array> {
    return this.send({ draw }, () => drawJobPixels(draw));
  }

  /** Posts `msg` to the least busy worker; without workers runs `inline` here. */
  private send(msg: { job: ImageJob; preprocess: PreprocessOptions } | { draw: DrawJob }, inline: () => Float32Array): Promise<Float32Array> {
    if (this.broken) return Promise.reject(this.broken);
    if (!this.workers.length && this.size > 0) this.startWorkers();
    if (!this.workers.length) {
      try {
        return Promise.resolve(inline());
      } catch (e) {
        return Promise.reject(e);
      }
    }
    let k = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.workers[i]!.busy < this.workers[k]!.busy) k = i;
    const id = this.nextId++;
    if (this.workers[k]!.busy++ === 0) this.workers[k]!.w.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: k });
      this.workers[k]!.w.postMessage({ id, ...msg });
    });
  }

  private reply(r: WorkerReply): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    const w = this.workers[p.worker]!;
    if (--w.busy === 0) w.w.unref();
    if (r.pixels) p.resolve(r.pixels);
    else if (r.error) p.reject(new PipeRuntimeError(r.error.code, r.error.message, r.error.location, r.error.hint));
    else p.reject(runtimeError(M.DataWorkerFailed, [r.crash ?? 'no result'], undefined, 'this is a bug in pipec; PIPEC_DATA_WORKERS=0 decodes on the main thread instead'));
  }

  private fail(e: Error): void {
    if (this.broken) return;
    this.broken = runtimeError(M.DataWorkerFailed, [e.message], undefined, 'PIPEC_DATA_WORKERS=0 decodes on the main thread instead');
    for (const p of this.pending.values()) p.reject(this.broken);
    this.pending.clear();
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0);
    this.broken ??= new Error('the image pool is closed');
    for (const p of this.pending.values()) p.reject(this.broken);
    this.pending.clear();
    await Promise.all(ws.map((x) => x.w.terminate()));
  }
}
