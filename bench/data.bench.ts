// The data path at scale (issue 17): LLaVA-format datasets of 10k and 100k records and one JSON array
// past 600 MB, each trained on by `pipec run` in a child process (a tiny model, its encoder at 336 px,
// so the images are what costs), printing per dataset:
//   - time to the first step: from the process's start (compile, record index, data pre-flight over
//     every record, first micro-batches decoded) to the first step's log line;
//   - steady samples/s: the steps after the first `warm` ones, from metrics.jsonl's elapsed_s, with the
//     time those steps waited on the image workers (metrics' data_wait_s);
//   - peak memory: the child's maximum resident set (/usr/bin/time's %M, worker threads included).
// The images are a few small PNGs of several sizes, shared by path across records: training's data path
// (read by index, decode + preprocess in workers) does the same work per record whether or not two
// records name the same file; the pre-flight decodes a file once per pass, so with unique images its
// time to the first step grows by one small-PNG decode per record. Records are LLaVA's shape: an id, an image, a
// conversation of 1 to 5 turns; the big array's records are longer (multi-turn, ~1.5 KB as LLaVA-665k's).
//   node dist/bench/data.bench.js [--records 10000,100000] [--big-mb 640] [--steps 60] [--warm 10]
//                                 [--batch 8] [--repeat 1] [--backend auto] [--keep]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';
import { writePng } from '../test/helpers/png.js';
import { median } from './stats.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}
const SIZES = arg('records', '10000,100000').split(',').filter(Boolean).map(Number);
const BIG_MB = Number(arg('big-mb', '640'));
const STEPS = Number(arg('steps', '60'));
const WARM = Number(arg('warm', '10'));
const BATCH = Number(arg('batch', '8'));
const REPEAT = Number(arg('repeat', '1'));
const BACKEND = arg('backend', 'auto');
const PIPEC = fileURLToPath(new URL('../../bin/pipec.js', import.meta.url));

const WORDS = ('what is in the image describe it picture shows a red blue green yellow square circle triangle on left right top bottom ' +
  'corner of frame near small big and with there are two three objects colour shape where which one USER: ASSISTANT:').split(' ');
const QUESTIONS = ['what is in the image ?', 'describe the picture', 'which colour is the square ?', 'where is the circle ?', 'how many objects are there ?'];

/** A sentence of `n` words from WORDS, varying with `seed`. */
function sentence(seed: number, n: number): string {
  return Array.from({ length: n }, (_, k) => WORDS[(seed * 7 + k * 13 + (k * k) % 5) % (WORDS.length - 2)]).join(' ');
}

/** Record i: an image and 1-5 turns (`long`: turns of 30-45 words, as LLaVA's instruction data). */
function record(i: number, images: number, long: boolean): unknown {
  const turns = long ? 4 + (i % 3) : 1 + (i % 5);
  const conversations: { from: string; value: string }[] = [];
  for (let t = 0; t < turns; t++) {
    conversations.push({ from: 'human', value: (t === 0 ? '<image>\n' : '') + QUESTIONS[(i + t) % QUESTIONS.length] });
    conversations.push({ from: 'gpt', value: sentence(i + t, long ? 30 + ((i + t) % 16) : 4 + ((i * 3 + t) % 17)) });
  }
  return { id: `r${String(i).padStart(9, '0')}`, image: `img${i % images}.png`, conversations };
}

/** A JSON array of records written in pieces (never one string); until `minBytes` when given. */
function writeArray(file: string, o: { count?: number; minBytes?: number; images: number; long: boolean }): { records: number; bytes: number } {
  const fd = fs.openSync(file, 'w');
  let bytes = 0, n = 0, parts: string[] = [];
  const flush = () => {
    const s = parts.join('');
    parts = [];
    bytes += fs.writeSync(fd, s);
  };
  parts.push('[');
  while (o.count !== undefined ? n < o.count : bytes < o.minBytes!) {
    parts.push((n ? ',\n' : '\n') + JSON.stringify(record(n, o.images, o.long)));
    n++;
    if (parts.length >= 4096) flush();
  }
  parts.push('\n]\n');
  flush();
  fs.closeSync(fd);
  return { records: n, bytes };
}

function program(data: string, maxLength: number): string {
  return `import "std/vision"
import "std/projectors"
import "std/llm"
import "std/data"
import "std/train"
model m {
  encoder vision = vit(image: 336, patch: 28, hidden: 32, layers: 1, heads: 2, mlp: 64, select: "patch")
  projector proj = linear(in: vision.hidden, out: lm.hidden)
  llm lm = llama(vocab: 64, hidden: 32, layers: 1, heads: 2, mlp: 64, context: ${maxLength})
  flow vision -> proj -> lm at "<image>"
}
template short {
  system: ""
  user: "USER: "
  assistant: "ASSISTANT: "
  separator: " "
}
dataset d = llava_json(file: "${data}", images: "images", template: short, tokenizer: "tokenizer.json")
stage s {
  model: m
  train: [proj, lm]
  freeze: [vision]
  data: d
  optimizer: adamw(lr: 1e-3)
  batch: ${BATCH}
  steps: ${STEPS}
  max_length: ${maxLength}
  seed: 1
}
`;
}

interface Figures { firstStepS: number; samplesPerS: number; waitS: number; steadyS: number; peakMb: number; preflight: string }

/** One `pipec run` in a child under /usr/bin/time; the figures of its log and metrics. */
function runOnce(dir: string, pipe: string, runDir: string): Promise<Figures> {
  fs.rmSync(runDir, { recursive: true, force: true });
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstStepS = NaN, log = '';
    const child = spawn('/usr/bin/time', ['-f', 'PEAK_KB %M', process.execPath, PIPEC, 'run', pipe, '--out', runDir, '--backend', BACKEND], { cwd: dir });
    const watch = (b: Buffer) => {
      log += b.toString();
      if (Number.isNaN(firstStepS) && /^step s +1\//m.test(log)) firstStepS = (performance.now() - t0) / 1000;
    };
    child.stdout.on('data', watch);
    child.stderr.on('data', watch);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`pipec run exited with ${code}:\n${log.slice(-3000)}`));
      const rows = fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { elapsed_s: number; data_wait_s: number });
      const steady = rows.slice(WARM);
      const steadyS = rows[rows.length - 1]!.elapsed_s - rows[WARM - 1]!.elapsed_s;
      resolve({
        firstStepS, steadyS,
        samplesPerS: (steady.length * BATCH) / steadyS,
        waitS: steady.reduce((a, r) => a + r.data_wait_s, 0),
        peakMb: Number(/PEAK_KB (\d+)/.exec(log)?.[1] ?? NaN) / 1024,
        preflight: /data pre-flight: stage s: [^\n]*/.exec(log)?.[0] ?? '?',
      });
    });
  });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipec-data-bench-'));
try {
  fs.mkdirSync(path.join(dir, 'images'));
  const IMAGES = 48;
  for (let i = 0; i < IMAGES; i++) {
    const w = 24 + ((i * 17) % 41), h = 24 + ((i * 29) % 41);
    const rgb: number[] = [];
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.push((x * 37 + i * 11) % 256, (y * 53 + i * 29) % 256, ((x + y) * 19 + i * 7) % 256);
    writePng(path.join(dir, 'images', `img${i}.png`), { width: w, height: h, rgb });
  }
  const tok = VocabTokenizer.fromTexts([WORDS.join(' ') + ' ' + QUESTIONS.join(' ')], 64);
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok.toTokenizerJson()));

  const sets: { label: string; file: string; maxLength: number; make: () => { records: number; bytes: number } }[] = [
    ...SIZES.map((n) => ({ label: `${n / 1000}k records`, file: `d${n}.json`, maxLength: 384, make: () => writeArray(path.join(dir, `d${n}.json`), { count: n, images: IMAGES, long: false }) })),
    ...(BIG_MB > 0 ? [{ label: `>${BIG_MB} MB array`, file: 'big.json', maxLength: 640, make: () => writeArray(path.join(dir, 'big.json'), { minBytes: BIG_MB * 1e6, images: IMAGES, long: true }) }] : []),
  ];
  console.log(`data bench: ${os.cpus().length} cores, ${os.totalmem() / 2 ** 30 | 0} GiB; vit at 336 px (patch 28: 144 image tokens), batch ${BATCH}, ${STEPS} steps (steady: after ${WARM}); ${IMAGES} PNGs of 24-64 px shared by path; backend ${BACKEND}`);
  const rows: string[] = [];
  for (const s of sets) {
    const g0 = performance.now();
    const made = s.make();
    const pipe = path.join(dir, `${s.file}.pipe`);
    fs.writeFileSync(pipe, program(s.file, s.maxLength));
    console.log(`\n${s.label}: ${made.records} records, ${(made.bytes / 1e6).toFixed(1)} MB written in ${((performance.now() - g0) / 1000).toFixed(1)} s`);
    const runs: Figures[] = [];
    for (let k = 0; k < REPEAT; k++) {
      const f = await runOnce(dir, pipe, path.join(dir, `run-${s.file}`));
      runs.push(f);
      console.log(`  run ${k + 1}: first step ${f.firstStepS.toFixed(1)} s; steady ${f.samplesPerS.toFixed(1)} samples/s (waited ${f.waitS.toFixed(2)} of ${f.steadyS.toFixed(1)} s on data); peak ${f.peakMb.toFixed(0)} MB`);
      console.log(`    ${f.preflight}`);
    }
    const m = (k: keyof Omit<Figures, 'preflight'>) => median(runs.map((r) => r[k]));
    rows.push(`| ${s.label} | ${made.records} | ${(made.bytes / 1e6).toFixed(0)} MB | ${m('firstStepS').toFixed(1)} s | ${m('samplesPerS').toFixed(1)} | ${m('waitS').toFixed(2)} s of ${m('steadyS').toFixed(1)} s | ${m('peakMb').toFixed(0)} MB |`);
    if (!process.argv.includes('--keep')) {
      fs.rmSync(path.join(dir, s.file), { force: true });
      fs.rmSync(path.join(dir, `run-${s.file}`), { recursive: true, force: true });
    }
  }
  console.log(`\nmedians of ${REPEAT} run${REPEAT === 1 ? '' : 's'}:\n| data | records | file | time to first step | steady samples/s | waited on data | peak memory |\n|---|---|---|---|---|---|---|\n${rows.join('\n')}`);
} finally {
  if (process.argv.includes('--keep')) console.log(`kept ${dir}`);
  else fs.rmSync(dir, { recursive: true, force: true });
}
