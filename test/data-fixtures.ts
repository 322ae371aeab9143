// Fixtures for the data tests (data-confinement, data-roles, data-preflight): tiny PNGs, LLaVA records,
// a word tokenizer, a two-stage program, and a recorder of every file node:fs opens by name.
import * as fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';
import { solid, writePng as writePngFile } from './helpers/png.js';
import { tmpDir } from './helpers/tmp.js';

export { tmpDir };

/** A w x h PNG of one colour (helpers/png.ts). */
export function writePng(file: string, rgb: [number, number, number], w = 20, h = 24): void {
  writePngFile(file, solid(w, h, rgb));
}

/** A LLaVA record asking for the colour; `roles` are the two `from` spellings. */
export function record(id: string, image: string, answer: string, roles: [string, string] = ['human', 'gpt']) {
  return { id, image, conversations: [{ from: roles[0], value: '<image>\nwhat colour ?' }, { from: roles[1], value: answer }] };
}

/** A word tokenizer for the records' words (64 ids at most), written as tokenizer.json. */
export function writeTokenizer(file: string, extra = ''): void {
  const tok = VocabTokenizer.fromTexts([`USER: ASSISTANT: what colour ? red blue green ${extra}`], 64);
  fs.writeFileSync(file, JSON.stringify(tok.toTokenizerJson()));
}

export interface ProgramOptions {
  /** Dataset declarations, each `dataset NAME = ...`. */
  datasets: string[];
  /** Stage name -> dataset name, in order; each stage after the one before. */
  stages: [string, string][];
  maxLength?: number;
  vocab?: number;
  steps?: number;
  /** checkpoint.every of each stage (default: none but the stage's end). */
  checkpointEvery?: number;
}

export function program(o: ProgramOptions): string {
  const stages = o.stages.map(([name, data], i) => `stage ${name} {
  model: m
  ${i ? `after: ${o.stages[i - 1]![0]}\n  ` : ''}train: [proj, lm]
  freeze: [vision]
  data: ${data}
  optimizer: adamw(lr: 1e-3)
  batch: 2
  steps: ${o.steps ?? 2}
  max_length: ${o.maxLength ?? 24}${o.checkpointEvery ? `\n  checkpoint: { every: ${o.checkpointEvery}, keep: 1 }` : ''}
}`);
  return `import "std/vision"
import "std/projectors"
import "std/llm"
import "std/data"
import "std/train"

model m {
  encoder vision = vit(image: 16, patch: 8, hidden: 16, layers: 1, heads: 2, mlp: 32, select: "patch")
  projector proj = linear(in: vision.hidden, out: lm.hidden)
  llm lm = llama(vocab: ${o.vocab ?? 64}, hidden: 16, layers: 1, heads: 2, mlp: 32, context: 64)
  flow vision -> proj -> lm at "<image>"
}

template short {
  system: ""
  user: "USER: "
  assistant: "ASSISTANT: "
  separator: " "
}

${o.datasets.join('\n')}

${stages.join('\n\n')}
`;
}

const require = createRequire(import.meta.url);
const cjsFs = require('node:fs') as Record<string, unknown>;
const BY_NAME = ['openSync', 'readFileSync', 'createReadStream', 'open', 'readFile'] as const;

/**
 * Runs `fn` and returns every path node:fs was asked to open or read by name meanwhile (the ESM
 * namespace every module imports is re-synced with the patched functions, then restored).
 */
export function pathsOpenedDuring(fn: () => void): string[] {
  const seen: string[] = [];
  const saved = new Map<string, unknown>();
  for (const name of BY_NAME) {
    const orig = cjsFs[name] as (...a: unknown[]) => unknown;
    saved.set(name, orig);
    cjsFs[name] = (...args: unknown[]) => {
      if (typeof args[0] === 'string' || args[0] instanceof URL || Buffer.isBuffer(args[0])) seen.push(String(args[0]));
      return orig(...args);
    };
  }
  syncBuiltinESMExports();
  try {
    fn();
  } finally {
    for (const [name, orig] of saved) cjsFs[name] = orig;
    syncBuiltinESMExports();
  }
  return seen;
}

/** Replaces node:fs's openSync while `fn` runs: `hook` sees each call first. */
export function withOpenHook<T>(hook: (file: string) => void, fn: () => T): T {
  const orig = cjsFs.openSync as (...a: unknown[]) => number;
  cjsFs.openSync = (...args: unknown[]) => {
    hook(String(args[0]));
    return orig(...args);
  };
  syncBuiltinESMExports();
  try {
    return fn();
  } finally {
    cjsFs.openSync = orig;
    syncBuiltinESMExports();
  }
}
