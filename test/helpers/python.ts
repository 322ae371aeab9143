// The Pythons the export tests run the generated PyTorch program with, and one way to run them.
// - torch1Python: /usr/bin/python3 with Debian 12's python3-torch (1.13), the oldest torch the exported
//   program supports (docs/export.md), and torch alone: no safetensors package, so the program's own
//   safetensors reader and writer run, and torchrun needs launch.sh's TORCHRUN_ARGS. PIPEC_TEST_PYTHON
//   names another.
// - torch2Python: .venv-torch/bin/python (`npm run setup:torch`: torch >= 2 with safetensors) for FSDP
//   and what needs torch >= 2 (the meta device). PIPEC_TORCH2_PYTHON names another.
import { strict as assert } from 'node:assert';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import { repo } from '../paths.js';
import { childEnv } from './tmp.js';

export interface TorchPython {
  python: string;
  torch: string;
}

/** The torch version `python` imports, or undefined when it cannot (no such file, no torch). */
function torchVersion(python: string): string | undefined {
  if (!fs.existsSync(python)) return undefined;
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', env: childEnv() });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

const found = new Map<string, TorchPython | null>();
function probe(key: string, candidates: (string | undefined)[], ok: (version: string) => boolean): TorchPython | undefined {
  if (!found.has(key)) {
    let hit: TorchPython | null = null;
    for (const python of candidates) {
      const torch = python ? torchVersion(python) : undefined;
      if (python && torch && ok(torch)) {
        hit = { python, torch };
        break;
      }
    }
    found.set(key, hit);
  }
  return found.get(key) ?? undefined;
}

export const TORCH1_PYTHON = process.env.PIPEC_TEST_PYTHON ?? '/usr/bin/python3';

/** A Python with torch 1.x: Debian's python3-torch unless PIPEC_TEST_PYTHON names another. */
export function torch1Python(): TorchPython | undefined {
  return probe('1', [TORCH1_PYTHON], (v) => v.startsWith('1.'));
}

/** A Python with torch >= 2: PIPEC_TORCH2_PYTHON, or the venv `npm run setup:torch` makes. */
export function torch2Python(): TorchPython | undefined {
  return probe('2', [process.env.PIPEC_TORCH2_PYTHON, repo('.venv-torch/bin/python')], (v) => Number(v.split('.')[0]) >= 2);
}

/**
 * A Python with torch >= 2 and transformers >= 5 (with safetensors, tokenizers and Pillow), for the
 * references and the Hugging Face layout and export tests: PIPEC_REFERENCE_PYTHON, else .venv-torch (`npm run setup:torch`).
 * Returns why not when there is none.
 */
export function transformersPython(): { python: string } | { why: string } {
  if (transformers === undefined) {
    const python = process.env.PIPEC_REFERENCE_PYTHON ?? repo('.venv-torch/bin/python');
    const probe = 'import sys, torch, transformers, safetensors, tokenizers, PIL\nsys.exit(0 if int(transformers.__version__.split(".")[0]) >= 5 and int(torch.__version__.split(".")[0]) >= 2 else 3)';
    const r = fs.existsSync(python) ? spawnSync(python, ['-c', probe], { encoding: 'utf8', env: childEnv() }) : undefined;
    transformers =
      r?.status === 0 ? { python }
      : { why: `${!r ? `${python} does not exist` : r.status === 3 ? `${python} has torch < 2 or transformers < 5` : `${python} cannot import torch, transformers, safetensors, tokenizers and PIL (Pillow)`} (${TRANSFORMERS_FIX})` };
  }
  return transformers;
}
let transformers: { python: string } | { why: string } | undefined;

/** The transformers Python when it also has PEFT (which loads the LoRA adapters pipec writes); else why not. */
export function peftPython(): { python: string } | { why: string } {
  if (peft === undefined) {
    const t = transformersPython();
    const r = 'python' in t ? spawnSync(t.python, ['-c', 'import peft'], { encoding: 'utf8', env: childEnv() }) : undefined;
    peft = !('python' in t) ? t : r?.status === 0 ? t : { why: `${t.python} cannot import peft (${TRANSFORMERS_FIX})` };
  }
  return peft;
}
let peft: { python: string } | { why: string } | undefined;

/**
 * A Python whose DeepSpeed the exported train.py --deepspeed can use on CPU (DeepSpeed >= 0.13: it has
 * set_z3_leaf_modules; torch >= 2): PIPEC_DEEPSPEED_PYTHON, else the torch >= 2 Python when it has DeepSpeed.
 * Returns why not when there is none. pip's configured index here has no DeepSpeed wheel, so this is
 * usually a venv built from DeepSpeed's source (docs/export.md).
 */
export function deepspeedPython(): { python: string; version: string } | { why: string } {
  if (deepspeed === undefined) {
    const python = process.env.PIPEC_DEEPSPEED_PYTHON ?? torch2Python()?.python;
    const probe = 'import torch, deepspeed\nfrom deepspeed.utils import set_z3_leaf_modules\nprint(deepspeed.__version__)';
    const r = python && fs.existsSync(python) ? spawnSync(python, ['-c', probe], { encoding: 'utf8', env: childEnv({ DS_ACCELERATOR: 'cpu' }) }) : undefined;
    deepspeed =
      r?.status === 0 ? { python: python!, version: r.stdout.trim().split('\n').pop()! }
      : { why: `${!python ? 'no Python with torch >= 2' : !r ? `${python} does not exist` : `${python} cannot import DeepSpeed >= 0.13 (${r.stderr.trim().split('\n').pop()})`}; set PIPEC_DEEPSPEED_PYTHON to a Python with torch >= 2 and DeepSpeed (pip's index here has no DeepSpeed wheel: build it from source, DS_BUILD_OPS=0)` };
  }
  return deepspeed;
}
let deepspeed: { python: string; version: string } | { why: string } | undefined;

export const TRANSFORMERS_FIX = 'npm run setup:torch makes .venv-torch with them, or set PIPEC_REFERENCE_PYTHON';
export const TORCH1_FIX = 'apt-get install -y python3-torch (Debian 12: torch 1.13), or set PIPEC_TEST_PYTHON';
export const TORCH2_FIX = 'npm run setup:torch makes .venv-torch, or set PIPEC_TORCH2_PYTHON';

export interface PythonOptions {
  cwd?: string;
  env?: Record<string, string>;
}

/** Runs `python args` (in `cwd`), its temporary files under the tests' temp root. */
export function spawnPython(python: string, args: string[], o: PythonOptions = {}): SpawnSyncReturns<string> {
  return spawnSync(python, args, { encoding: 'utf8', cwd: o.cwd, env: childEnv(o.env), maxBuffer: 64 * 1024 * 1024 });
}

/** Runs `python args` and returns its stdout; fails the test with its output when it exits non-zero. */
export function runPython(python: string, args: string[], o: PythonOptions = {}): string {
  const r = spawnPython(python, args, o);
  assert.equal(r.status, 0, `${python} ${args.join(' ')} failed:\n${`${r.stdout}\n${r.stderr}`.slice(-6000)}`);
  return r.stdout;
}

/**
 * A Python with TensorBoard (its event-file reader, for the read-back test of RUN/tb): PIPEC_REFERENCE_PYTHON,
 * else .venv-torch (`npm run setup:torch` installs tensorboard). Returns why not when there is none.
 */
export function tensorboardPython(): { python: string } | { why: string } {
  if (tensorboard === undefined) {
    const python = process.env.PIPEC_REFERENCE_PYTHON ?? repo('.venv-torch/bin/python');
    const r = fs.existsSync(python) ? spawnSync(python, ['-c', 'from tensorboard.backend.event_processing.event_accumulator import EventAccumulator'], { encoding: 'utf8', env: childEnv() }) : undefined;
    tensorboard = r?.status === 0 ? { python } : { why: `${!r ? `${python} does not exist` : `${python} cannot import tensorboard's EventAccumulator`} (${TENSORBOARD_FIX})` };
  }
  return tensorboard;
}
let tensorboard: { python: string } | { why: string } | undefined;

export const TENSORBOARD_FIX = 'npm run setup:torch installs tensorboard into .venv-torch, or set PIPEC_REFERENCE_PYTHON';
