// One image-decoding worker thread (image-workers.ts): reads each image through a DataRoot of its own
// (confinement decided here, at the open), decodes and preprocesses it, and sends the pixels back; or
// draws a synthetic record's image (synthetic-shapes.ts) and normalises it.
import { parentPort } from 'node:worker_threads';
import { PipeRuntimeError } from '../errors.js';
import { DataRoot } from './confine.js';
import type { PreprocessOptions } from './images.js';
import { loadImage, type ImageJob } from './llava-json.js';
import { preprocessImage } from './images.js';
import { type DrawJob, drawJobPixels } from './synthetic-shapes.js';
import type { WorkerReply } from './image-workers.js';

const roots = new Map<string, DataRoot>();

parentPort!.on('message', ({ id, job, preprocess, draw }: { id: number; job: ImageJob; preprocess: PreprocessOptions; draw?: DrawJob }) => {
  let reply: WorkerReply;
  try {
    if (draw) {
      const pixels = drawJobPixels(draw);
      parentPort!.postMessage({ id, pixels } satisfies WorkerReply, [pixels.buffer as ArrayBuffer]);
      return;
    }
    const key = `${job.root.dir}\0${job.root.shown}`;
    let root = roots.get(key);
    if (!root) roots.set(key, (root = new DataRoot(job.root.dir, job.root.shown)));
    const pixels = preprocessImage(loadImage(job, root), preprocess);
    parentPort!.postMessage({ id, pixels } satisfies WorkerReply, [pixels.buffer as ArrayBuffer]);
    return;
  } catch (e) {
    reply = e instanceof PipeRuntimeError ? { id, error: { code: e.code, message: e.message, location: e.location, hint: e.hint } } : { id, crash: String((e as Error)?.stack ?? e) };
  }
  parentPort!.postMessage(reply);
});
