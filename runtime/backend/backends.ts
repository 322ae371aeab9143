// Backend selection. TensorFlow.js backends are plugins that register themselves with tfjs-core when
// their package is imported; the native ones (@tensorflow/tfjs-node, -node-gpu) are optional packages
// whose install may have failed, so each is probed by importing it and reporting why it did not load.
// `auto` prefers, in order: tensorflow-gpu (a GPU is visible), webgpu on a hardware adapter, tensorflow,
// wasm. A software WebGPU adapter (lavapipe, llvmpipe, SwiftShader) is slower than wasm and is used only
// when `webgpu` is named, as is the pure-JS `cpu` backend (~100x slower than wasm for training).
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { M, runtimeError } from '../errors.js';
import { firstLine, resolvable } from './packages.js';
import { registerWasmExtras } from './wasm-extras.js';
import { startThreadedWasm, THREADS_MIN_WORK, wasmThreadsWanted } from './wasm-threads.js';
import { activateWebgpu, probeWebgpu } from './webgpu.js';

export const BACKEND_NAMES = ['auto', 'tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_NAMES)[number];
export type ConcreteBackend = Exclude<BackendChoice, 'auto'>;

export interface BackendProbe {
  name: ConcreteBackend;
  available: boolean;
  /** Why it is not available, or what it runs on. */
  detail: string;
  /** webgpu only: the adapter is a software one (never chosen by `auto`). */
  software?: boolean;
}

const require = createRequire(import.meta.url);


/** A visible NVIDIA GPU: the driver's proc file, which exists only where the kernel module is loaded. */
function gpuVisible(): boolean {
  return fs.existsSync('/proc/driver/nvidia/version');
}

/** What the caller knows of the workload, for choices a backend makes once per process. */
export interface WorkloadHint {
  /** Multiply-adds per micro-batch, roughly: parameters x batch x sequence length. */
  work?: number;
}

async function probe(name: ConcreteBackend, hint: WorkloadHint = {}): Promise<BackendProbe> {
  switch (name) {
    case 'tensorflow-gpu': {
      if (!resolvable('@tensorflow/tfjs-node-gpu')) return { name, available: false, detail: '@tensorflow/tfjs-node-gpu is not installed (its install downloads libtensorflow with CUDA, which fails offline)' };
      if (!gpuVisible()) return { name, available: false, detail: 'no NVIDIA GPU is visible (/proc/driver/nvidia/version is missing)' };
      try {
        await import('@tensorflow/tfjs-node-gpu' as string);
        return { name, available: true, detail: 'libtensorflow with CUDA' };
      } catch (e) {
        return { name, available: false, detail: `@tensorflow/tfjs-node-gpu failed to load: ${firstLine(e)}` };
      }
    }
    case 'webgpu': {
      const p = await probeWebgpu();
      return { name, available: p.available, detail: p.detail, ...(p.adapter ? { software: p.adapter.software } : {}) };
    }
    case 'tensorflow': {
      if (!resolvable('@tensorflow/tfjs-node')) return { name, available: false, detail: '@tensorflow/tfjs-node is not installed; `npm run setup:tensorflow` builds it offline from a tensorflow-cpu wheel' };
      try {
        process.env.TF_CPP_MIN_LOG_LEVEL ??= '2'; // libtensorflow's start-up chatter is not our log
        tensorflowThreads ??= tensorflowThreadsFor(hint.work);
        await import('@tensorflow/tfjs-node' as string);
        return { name, available: true, detail: `libtensorflow (CPU), ${tensorflowThreads}` };
      } catch (e) {
        return { name, available: false, detail: `@tensorflow/tfjs-node failed to load: ${firstLine(e)}; rerun \`npm run setup:tensorflow\`` };
      }
    }
    case 'wasm': {
      const n = wasmThreads ?? wasmThreadsWanted(hint.work);
      const many = wasmThreadsWanted();
      const threads = wasmThreads === undefined && hint.work === undefined && many > 1 ? `${many} threads (1 for small models)` : `${n} thread${n === 1 ? '' : 's'}`;
      return { name, available: true, detail: `WebAssembly with SIMD (XNNPACK), ${threads}; 2-D matmuls routed to its fast path` };
    }
    case 'cpu':
      return { name, available: true, detail: 'pure JavaScript; correct but slow, a last resort' };
  }
}

/** How libtensorflow was told to thread, set before it first loads (once per process). */
let tensorflowThreads: string | undefined;

/**
 * libtensorflow's thread pools are sized when it loads, from TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS
 * (all cores when unset). As with wasm (THREADS_MIN_WORK), a small model's thousands of small ops lose more to
 * handing work between threads than they gain: tiny-llava's training step on 2 cores took 86-93 ms with one
 * thread each against 110-149 ms by default, the 7.25M reference LM 333-338 ms against 311-319 ms (two runs
 * of each, alternating). So below THREADS_MIN_WORK both pools get one thread, unless the user set them.
 */
function tensorflowThreadsFor(work: number | undefined): string {
  const user = process.env.TF_NUM_INTRAOP_THREADS ?? process.env.TF_NUM_INTEROP_THREADS;
  if (user === undefined && work !== undefined && work < THREADS_MIN_WORK) {
    process.env.TF_NUM_INTRAOP_THREADS = '1';
    process.env.TF_NUM_INTEROP_THREADS = '1';
    return 'one thread (a small model; TF_NUM_INTRAOP_THREADS sets it)';
  }
  return user === undefined ? 'multi-threaded' : `TF_NUM_INTRAOP_THREADS=${process.env.TF_NUM_INTRAOP_THREADS ?? '(all cores)'}, TF_NUM_INTEROP_THREADS=${process.env.TF_NUM_INTEROP_THREADS ?? '(all cores)'}`;
}

export async function probeBackends(): Promise<BackendProbe[]> {
  const out: BackendProbe[] = [];
  for (const n of BACKEND_NAMES) if (n !== 'auto') out.push(await probe(n));
  return out;
}

/** Threads the wasm backend started with (it starts once per process); undefined before. */
let wasmThreads: number | undefined;

async function activateWasm(hint: WorkloadHint): Promise<boolean> {
  if (wasmThreads !== undefined) return tf.setBackend('wasm');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // The .wasm binaries ship inside the npm package; point the loader at them (no CDN).
  wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
  registerWasmExtras();
  const wanted = wasmThreadsWanted(hint.work);
  let ok: boolean;
  try {
    ok = wanted > 1 ? await startThreadedWasm(wanted, wasm.setThreadsCount, () => tf.setBackend('wasm')) : await tf.setBackend('wasm');
  } catch (e) {
    throw runtimeError(M.BackendUnavailable, ['wasm', `its ${wanted}-thread build failed to start: ${firstLine(e)}`], undefined, 'PIPEC_WASM_THREADS=1 selects the single-threaded build');
  }
  if (ok) wasmThreads = wasm.getThreadsCount();
  return ok;
}

async function activate(name: ConcreteBackend, hint: WorkloadHint): Promise<boolean> {
  if (name === 'wasm') {
    return activateWasm(hint);
  } else if (name === 'cpu') {
    await import('@tensorflow/tfjs-backend-cpu');
  } else if (name === 'webgpu') {
    return activateWebgpu();
  }
  const tfName = name === 'cpu' ? 'cpu' : 'tensorflow';
  return tf.setBackend(tfName);
}

export interface ActiveBackend {
  name: ConcreteBackend;
  /** One line for the log: which backend and why. */
  note: string;
}

/** What a started backend runs on; wasm's detail, probed again, names the threads it started with. */
async function startedDetail(p: BackendProbe, hint: WorkloadHint): Promise<string> {
  return p.name === 'wasm' ? (await probe('wasm', hint)).detail : p.detail;
}

/** Activates a backend; `auto` takes the first available in order of speed. Throws PIPE9020. */
export async function initBackend(choice: BackendChoice, hint: WorkloadHint = {}): Promise<ActiveBackend> {
  if (choice !== 'auto') {
    const p = await probe(choice, hint);
    if (!p.available || !(await activate(choice, hint))) {
      const hint = choice === 'webgpu' ? 'run `pipec backends`; `--backend auto` falls back to tensorflow or wasm' : 'run `pipec backends` to see what loads here';
      throw runtimeError(M.BackendUnavailable, [choice, p.available ? `${p.detail}, but it failed to start` : p.detail], undefined, hint);
    }
    return { name: choice, note: `backend ${choice} (${await startedDetail(p, hint)})` };
  }
  const skipped: string[] = [];
  for (const name of ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm'] as const) {
    const p = await probe(name, hint);
    if (p.available && !p.software && (await activate(name, hint))) {
      return { name, note: `backend ${name} chosen by auto (${await startedDetail(p, hint)})${skipped.length ? `; skipped ${skipped.join(', ')}` : ''}` };
    }
    skipped.push(p.software ? `${name} (software adapter; --backend webgpu uses it)` : name);
  }
  throw runtimeError(M.BackendUnavailable, ['auto', 'no backend loaded'], undefined, 'run `pipec backends`');
}
