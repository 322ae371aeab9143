// The CLI commands `pipec export` (--target torch: from a program; --target hf: from a run) and
// `pipec prepare`, loaded by cli/main.ts only when needed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { UsageError } from '../../compiler/service/service.js';
import { prepareStages } from './prepare.js';
import { exportHf, type HfExportOptions } from './hf.js';
import { ExportError, exportTorch, type TorchExportOptions } from './torch.js';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export const EXPORT_TARGETS = ['torch', 'hf'] as const;

/** Writes the exported files into `outDir` (created; existing files of the same names are replaced atomically). */
export function exportCommand(graph: Graph, outDir: string, target: string, io: Io, o: TorchExportOptions & { baseDir?: string } = {}): number {
  if (!(EXPORT_TARGETS as readonly string[]).includes(target)) {
    io.err(`pipec: --target must be one of ${EXPORT_TARGETS.join(', ')}, got ${target}\n`);
    return 2;
  }
  if (target === 'hf') {
    io.err('pipec: --target hf exports a finished run: pipec export RUN_DIR --target hf -o DIR\n');
    return 2;
  }
  let files: Map<string, string>;
  try {
    files = exportTorch(graph, o);
  } catch (e) {
    if (!(e instanceof ExportError)) throw e;
    io.err(`error: cannot export ${graph.source}: ${e.message}\n`);
    return 1;
  }
  fs.mkdirSync(outDir, { recursive: true });
  for (const [name, text] of files) {
    const file = path.join(outDir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = path.join(path.dirname(file), `.${path.basename(name)}.tmp-${process.pid}`);
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  }
  io.err(`wrote ${[...files.keys()].map((f) => path.join(outDir, f)).join(', ')}\n`);
  if (files.has('launch/launch.sh')) fs.chmodSync(path.join(outDir, 'launch/launch.sh'), 0o755);
  return 0;
}

/** `pipec export RUN --target hf -o DIR`: the run's final checkpoint as a transformers LLaVA folder (hf.ts). */
export function exportHfCommand(runDir: string, outDir: string, io: Io, o: HfExportOptions = {}): number {
  const r = exportHf(runDir, outDir, o);
  for (const n of r.notes) io.err(`note: ${n}\n`);
  const shown = path.relative(process.cwd(), r.dir);
  io.err(`wrote ${shown.startsWith('..') ? r.dir : shown}: ${r.files.join(', ')} (${(r.bytes / 1048576).toFixed(1)} MiB of tensors)\n`);
  return 0;
}

export function prepareCommand(graph: Graph, baseDir: string, o: { out: string; stage?: string; init?: boolean; worldSize?: number }, io: Io): number {
  if (o.stage && !graph.stages.some((s) => s.name === o.stage)) {
    throw new UsageError(`the program has no stage "${o.stage}" (stages: ${graph.stages.map((s) => s.name).join(', ')})`);
  }
  if (o.worldSize !== undefined && o.worldSize < 1) {
    throw new UsageError('--world-size must be at least 1');
  }
  const t0 = performance.now();
  const done = prepareStages({ graph, baseDir, outDir: o.out, stage: o.stage, init: o.init, worldSize: o.worldSize });
  for (const s of done)
    io.err(`stage ${s.stage}: ${s.microBatches} micro-batches (${s.steps} steps) from ${s.records} records, ${(s.bytes / 1048576).toFixed(1)} MiB -> ${s.dir}\n`);
  io.err(`prepared in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return 0;
}
