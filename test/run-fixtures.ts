// Shared by the run-folder, verified-resume and kill-campaign tests: the tiny program with short
// stages, an in-process run that captures its log and its error, and a snapshot of a folder's files
// (to assert that a refused run changed nothing).
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../compiler/ir/graph.js';
import { compile } from '../compiler/service/service.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import { MANIFEST_FILE } from '../runtime/train/manifest.js';
import { Progress } from '../runtime/train/progress.js';
import { runProgram, type RunOptions } from '../runtime/train/run.js';
import { repo } from './paths.js';
import { tmpDir } from './helpers/tmp.js';

export const TINY = repo('test/runtime/tiny.pipe');
/** Short stages that checkpoint often: align 6 steps (every 2, keep 2), finetune 2 steps (every 1). */
export const SHORT = ['stage.align.steps=6', 'stage.align.checkpoint.every=2', 'stage.finetune.steps=2', 'stage.finetune.checkpoint.every=1'];

export function tinyGraph(sets: string[] = SHORT): Graph {
  const r = compile({ file: TINY, configFiles: [], sets, lower: true });
  assert.ok(r.graph, 'tiny.pipe compiles');
  return r.graph;
}

export { tmpDir };

export interface Ran {
  log: string;
  error?: PipeRuntimeError;
}

/** Runs in this process on wasm; a PipeRuntimeError is returned (with the log so far), anything else thrown. */
export async function runIn(runDir: string, o: Partial<RunOptions> = {}): Promise<Ran> {
  let log = '';
  const out = new Progress({ write: (s: string) => ((log += s), true) });
  try {
    await runProgram({ graph: tinyGraph(), baseDir: repo('test/runtime'), runDir, backend: 'wasm', out, evaluate: false, ...o });
    return { log };
  } catch (e) {
    if (e instanceof PipeRuntimeError) return { log, error: e };
    throw e;
  }
}

/** Every entry under `dir` -> its SHA-256 (files), `dir` or `-> target` (links): equal snapshots, nothing changed. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const f = path.join(d, e.name), r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isSymbolicLink()) out[r] = `-> ${fs.readlinkSync(f)}`;
      else if (e.isDirectory()) ((out[r] = 'dir'), walk(f, r));
      else out[r] = createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    }
  };
  walk(dir, '');
  return out;
}

/** Rewrites a checkpoint's manifest to match its files as they are now: a writer that sealed bad contents. */
export function reseal(ckpt: string): void {
  const m = JSON.parse(fs.readFileSync(path.join(ckpt, MANIFEST_FILE), 'utf8')) as { files: Record<string, { size: number; sha256: string }> };
  for (const rel of Object.keys(m.files)) {
    const f = path.join(ckpt, rel);
    if (!fs.existsSync(f)) continue;
    const b = fs.readFileSync(f);
    m.files[rel] = { size: b.length, sha256: createHash('sha256').update(b).digest('hex') };
  }
  fs.writeFileSync(path.join(ckpt, MANIFEST_FILE), JSON.stringify(m, null, 2));
}

/** The per-step rows of metrics.jsonl as [stage, step, loss], for exact comparison between runs. */
export function lossRows(runDir: string): [string, number, number][] {
  return fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const m = JSON.parse(l) as { stage: string; step: number; loss: number };
    return [m.stage, m.step, m.loss];
  });
}

/** The tensor files of a checkpoint (each component's model.safetensors, optimizer.safetensors) -> bytes' SHA-256. */
export function tensorFiles(ckpt: string): Record<string, string> {
  return Object.fromEntries(Object.entries(snapshot(ckpt)).filter(([f]) => f.endsWith('.safetensors')));
}
