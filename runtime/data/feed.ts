// The streaming trainer's data: micro-batches made on demand from the stage's sources in the order of
// order.ts, a few ahead of the one being trained. For each micro-batch of the window the main thread
// reads and tokenizes its records (stages 1-4, pipeline.ts: cheap) and hands its images to the worker
// pool (stage 5, image-workers.ts: the costly part), which decodes them while the main thread runs the
// training step. Only the window is ever in memory -- `ahead` micro-batches of pixels -- whatever the
// dataset's size. The records a stage trains on are the ones the data pre-flight passed (their signed
// lengths, pipeline.ts: recordLengths), so the samples and their order are the in-memory path's.
import { M, PipeRuntimeError, runtimeError } from '../errors.js';
import { collate, type Batch, type Sample } from './batch.js';
import type { ImagePool } from './image-workers.js';
import type { EpochOrders } from './order.js';
import type { RecordReader } from './pipeline.js';

/** One source of a stage: its reader and the records it trains on. */
export interface StageSource {
  reader: RecordReader;
  /** The records trained on, in record order (the samples of order.ts are positions in this list). */
  usable: Uint32Array;
}

export interface FeedOptions {
  sources: StageSource[];
  orders: EpochOrders;
  imageShape: [number, number, number];
  padId: number;
  pool: ImagePool;
  /** Micro-batches prepared (or being prepared) beyond the one being trained. */
  ahead: number;
  /** The stage's micro-batches: [0, end). */
  end: number;
}

export class StageFeed {
  private next = 0;
  private readonly queue = new Map<number, Promise<Batch>>();
  /** Seconds the trainer waited for a micro-batch that was not ready yet. */
  waited = 0;

  constructor(private readonly o: FeedOptions) {}

  /** Continues from micro-batch k (a resume), dropping whatever was prepared. */
  start(k: number): void {
    this.queue.clear();
    this.next = k;
    this.fill();
  }

  /** The next micro-batch, in order; rejects with the located error of a record that fails. */
  async take(): Promise<Batch> {
    this.fill();
    const k = this.next++;
    const p = this.queue.get(k)!;
    this.queue.delete(k);
    this.fill();
    const t0 = performance.now();
    const b = await p;
    this.waited += (performance.now() - t0) / 1000;
    return b;
  }

  /** The records of micro-batch k: (source name, record index) per sample. */
  records(k: number): { source: string; index: number }[] {
    return [...this.o.orders.microBatch(k)].map((x) => {
      const { source, position } = this.o.orders.locate(x);
      const s = this.o.sources[source]!;
      return { source: s.reader.spec.name, index: s.usable[position]! };
    });
  }

  private fill(): void {
    for (let k = this.next; k < Math.min(this.o.end, this.next + 1 + this.o.ahead); k++) {
      if (this.queue.has(k)) continue;
      const p = this.prepare(k);
      p.catch(() => {}); // awaited (and rethrown) when its turn comes
      this.queue.set(k, p);
    }
  }

  private async prepare(k: number): Promise<Batch> {
    const parts = [...this.o.orders.microBatch(k)].map((x) => {
      const { source, position } = this.o.orders.locate(x);
      const s = this.o.sources[source]!;
      return this.sample(s.reader, s.usable[position]!);
    });
    return collate(await Promise.all(parts), this.o.padId, this.o.imageShape);
  }

  /** One sample: its example now, its images from the pool. */
  private async sample(reader: RecordReader, index: number): Promise<Sample> {
    const changed = (e: PipeRuntimeError) =>
      new PipeRuntimeError(e.code, e.message, e.location, `it passed the data pre-flight when the run started, so the data changed under the run; ${e.hint ?? 'restore it'}`);
    let rec;
    try {
      rec = reader.example(index);
    } catch (e) {
      throw e instanceof PipeRuntimeError ? changed(e) : e;
    }
    const preprocess = reader.spec.preprocess;
    let pixels: Float32Array[] = [];
    if (rec.jobs.length) {
      if (!preprocess) throw runtimeError(M.DataWorkerFailed, ['a record has images but the model has no encoder preprocessing']);
      try {
        pixels = await Promise.all(rec.jobs.map((job) => this.o.pool.run(job, preprocess)));
      } catch (e) {
        throw e instanceof PipeRuntimeError && e.code !== M.DataWorkerFailed.code ? changed(e) : e;
      }
    } else if (rec.draw) pixels = [await this.o.pool.draw(rec.draw)];
    else if (rec.pixels) pixels = [rec.pixels()];
    return { ...rec.example, pixels: pixels[0], ...(pixels.length > 1 ? { extraPixels: pixels.slice(1) } : {}), source: { dataset: reader.spec.name, index } };
  }
}
