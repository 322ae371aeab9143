// Independent references computed live by PyTorch and transformers: test/reference/*.py run with the
// Python helpers/python.ts finds (.venv-torch, or PIPEC_REFERENCE_PYTHON) into a temporary
// folder, writing safetensors that the tests read back here. Nothing is recorded in the repository.
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSafetensorsHeader } from '../../compiler/check/checkpoint-io.js';
import { repo } from '../paths.js';
import { runPython, transformersPython } from './python.js';

/** Quiet, offline and deterministic transformers. */
export const PYTHON_ENV = { PYTHONHASHSEED: '0', TRANSFORMERS_VERBOSITY: 'error', HF_HUB_OFFLINE: '1', TOKENIZERS_PARALLELISM: 'false' };

/** Why the references cannot be computed here (a sentence for the skip message), or null when they can. */
export function referenceUnavailable(): string | null {
  const found = transformersPython();
  return 'why' in found ? found.why : null;
}

/** Files under `dir`, relative, sorted. */
function filesOf(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
}

/**
 * Runs test/reference/<script> with `spec` (written as spec.json) and `dir` as its output folder; paths
 * in the spec are relative to `dir`. With PIPEC_REFERENCE_CACHE (the mutation harness sets it to a
 * folder of its own, so each mutant does not rerun Python), the outputs are kept there under a hash of
 * the script and of every file in `dir` before the run, and reused when that hash recurs.
 */
export function runReference(script: string, spec: unknown, dir: string): void {
  const specFile = path.join(dir, 'spec.json');
  fs.writeFileSync(specFile, JSON.stringify(spec, null, 1));
  const cacheRoot = process.env.PIPEC_REFERENCE_CACHE;
  let cached: string | undefined;
  if (cacheRoot) {
    const h = createHash('sha256').update(fs.readFileSync(repo('test/reference', script)));
    for (const f of filesOf(dir)) h.update(f).update(fs.readFileSync(path.join(dir, f)));
    cached = path.join(cacheRoot, h.digest('hex').slice(0, 24));
    if (fs.existsSync(cached)) {
      fs.cpSync(cached, dir, { recursive: true });
      return;
    }
  }
  const found = transformersPython();
  if ('why' in found) assert.fail(found.why);
  runPython(found.python, [repo('test/reference', script), specFile, dir], { env: PYTHON_ENV });
  if (cached) fs.cpSync(dir, cached, { recursive: true });
}

export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

/** Every tensor of a safetensors file (F64 or F32) as float64. */
export function readTensors(file: string): Map<string, RefTensor> {
  const header = readSafetensorsHeader(file);
  const bytes = fs.readFileSync(file);
  const out = new Map<string, RefTensor>();
  for (const [name, info] of header.tensors) {
    const [start, end] = info.byteRange!;
    const width = info.dtype === 'F64' ? 8 : info.dtype === 'F32' ? 4 : 0;
    if (!width) throw new Error(`${file}: ${name} is ${info.dtype}; references are F32 or F64`);
    const data = new Float64Array((end - start) / width);
    for (let i = 0; i < data.length; i++) data[i] = width === 8 ? bytes.readDoubleLE(start + i * 8) : bytes.readFloatLE(start + i * 4);
    out.set(name, { shape: info.shape, data });
  }
  return out;
}

export function tensor(refs: Map<string, RefTensor>, name: string): RefTensor {
  const t = refs.get(name);
  if (!t) throw new Error(`the reference has no tensor "${name}"`);
  return t;
}

/**
 * Compares to a reference with an error measured against the reference tensor's own scale:
 * max |actual - expected| <= tol * max(floor, max |expected|). Returns that scaled error.
 */
export function closeToReference(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string, floor = 0): number {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values, the reference has ${expected.length}`);
  let scale = floor, worst = 0, at = -1;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i]! - expected[i]!);
    if (!(e <= worst)) (worst = e, at = i);
  }
  const scaled = scale > 0 ? worst / scale : worst;
  if (!(scaled <= tol)) assert.fail(`${what}[${at}] = ${actual[at]}, reference ${expected[at]}: error ${worst.toPrecision(3)} is ${scaled.toPrecision(3)} of the reference's scale ${scale.toPrecision(3)} (allowed ${tol})`);
  return scaled;
}
