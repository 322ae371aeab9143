// The CLI commands that train and sample (runtime/), loaded by main.ts only when needed (so `pipec check` never
// loads TensorFlow.js): run, generate, backends.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validateGraph } from '../compiler/ir/validate.js';
import type { Graph } from '../compiler/ir/graph.js';
import { BACKEND_NAMES, type BackendChoice, initBackend, probeBackends } from '../runtime/backend/backends.js';
import { releaseWebgpu } from '../runtime/backend/webgpu.js';
import { decideAllModules } from '../runtime/custom.js';
import { UsageError } from '../compiler/service/service.js';
import { M, runtimeError } from '../runtime/errors.js';
import { runProgram, type RunOptions } from '../runtime/train/run.js';
import { Progress } from '../runtime/train/progress.js';
import { generateFromRun } from '../runtime/train/generate-run.js';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export function backendChoice(v: string | undefined): BackendChoice {
  const b = (v ?? 'auto') as BackendChoice;
  if (!(BACKEND_NAMES as readonly string[]).includes(b)) throw new Error(`--backend must be one of ${BACKEND_NAMES.join(', ')}, got ${v}`);
  return b;
}

export function loadGraphFile(file: string): Graph {
  let g: unknown;
  try {
    g = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw runtimeError(M.GraphInvalid, [file, (e as Error).message], { file });
  }
  const errors = validateGraph(g);
  if (errors.length) throw runtimeError(M.GraphInvalid, [file, errors.slice(0, 3).join('; ')], { file }, 'recompile it with `pipec compile`');
  return g as Graph;
}

/**
 * The run folder when --out is not given: runs/NAME, NAME from the program's file name. A graph names
 * its program in `source`; only a plain file name counts ("quickstart.pipe" -> runs/quickstart), so a
 * source such as `..`, `/` or `x/.` cannot move the run folder: the given file's own name is used then.
 */
export function defaultRunDir(graph: Graph, file: string): string {
  const plain = (p: string) => {
    const n = path.basename(p).replace(/\.(pipe|json)$/, '');
    return /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(n) ? n : undefined;
  };
  return path.join('runs', plain(graph.source) ?? plain(file) ?? 'run');
}

export async function runCommand(graph: Graph, baseDir: string, o: { file: string; out?: string; backend?: string; resume?: boolean; overwrite?: boolean; stopAfter?: number }, io: Io): Promise<number> {
  const runDir = path.resolve(o.out ?? defaultRunDir(graph, o.file));
  decideAllModules(graph, baseDir); // custom code pipec may not run stops the run before it writes anything
  const summary = await runProgram({
    graph, baseDir, runDir, backend: backendChoice(o.backend), resume: o.resume, overwrite: o.overwrite,
    command: ['pipec', ...process.argv.slice(2)].join(' '),
    out: new Progress(process.stderr.isTTY ? process.stderr : { write: (s: string) => io.err(s) }),
    stopAfterSteps: o.stopAfter,
    hooks: faultInjection(),
  }).finally(releaseWebgpu); // Dawn's instance and device would keep the process up
  const shown = path.relative(process.cwd(), runDir);
  io.out(`run directory: ${shown.startsWith('..') ? runDir : shown || '.'}${summary.stopped_early ? ' (stopped early by --stop-after)' : ''}\n`);
  return 0;
}

export async function backendsCommand(io: Io): Promise<number> {
  try {
    for (const p of await probeBackends()) io.out(`${p.available ? 'yes' : 'no '}  ${p.name.padEnd(15)} ${p.detail}\n`);
    const { note } = await initBackend('auto');
    io.out(`auto: ${note.replace(/^backend /, '')}\n`);
    return 0;
  } finally {
    releaseWebgpu();
  }
}

export async function generateCommand(runDir: string, o: { image?: string; prompt?: string; backend?: string; maxTokens?: number; temperature?: number; topP?: number; seed?: number }, io: Io): Promise<number> {
  // Without a prompt the model would continue an empty chat turn: text, but not an answer to anything
  if (o.prompt === undefined) throw new UsageError('generate needs --prompt "..." (the question or instruction; --prompt "" for none, e.g. a captioning run)');
  const text = await generateFromRun(runDir, {
    backend: backendChoice(o.backend), image: o.image, prompt: o.prompt, maxNewTokens: o.maxTokens ?? 32,
    temperature: o.temperature ?? 0, topP: o.topP ?? 1, seed: o.seed ?? 0, log: (s) => io.err(s + '\n'),
  }).finally(releaseWebgpu);
  io.out(text + '\n');
  return 0;
}

/**
 * PIPEC_FAULT_KILL_AT_CHECKPOINT=N[:PHASE]: the Nth checkpoint save SIGKILLs this process as PHASE
 * begins (checkpoint.ts SavePhase; default `publish`: its files are written, not yet published -- the
 * worst moment for a crash). Used by the tests.
 */
function faultInjection(): RunOptions['hooks'] {
  const [n, phase = 'publish'] = (process.env.PIPEC_FAULT_KILL_AT_CHECKPOINT ?? '').split(':');
  if (!Number(n)) return {};
  let saves = 0;
  return {
    checkpointPhase: (p) => {
      if (p === 'components') saves++;
      if (p === phase && saves === Number(n)) process.kill(process.pid, 'SIGKILL');
    },
  };
}
