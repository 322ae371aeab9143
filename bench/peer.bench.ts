// npm run bench:peer -- the same training steps in pipec's runtime, in the exported PyTorch program, and in
// what users run instead of pipec (the real peer), in one run, on two workloads:
//   - tiny-llava: pipelines/tiny-llava.pipe (the earlier quickstart: a LLaVA with a ViT, which transformers
//     has), stage pretrain; the peer is transformers' LlavaForConditionalGeneration;
//   - reference-lm: the runtime bench's 7.25M-parameter llama (bench/reference-lm.pipe) trained on generated
//     text (8 x 128 tokens a step: a word-level tokenizer.json and LLaVA JSON records the bench writes); the
//     peer is transformers' LlamaForCausalLM.
// Each workload is exported (`pipec export --target torch`) and its stage prepared (`pipec prepare --init`:
// pipec's micro-batches and initial weights); then the first N steps run
//   - with `pipec run --stop-after N` on each backend (wasm, and tensorflow when it loads here),
//   - with the exported train.py (one process, fp32, CPU, `--init` from the prepared weights), and
//   - with transformers' model in a plain PyTorch loop (bench/peer/transformers_loop.py: torch's AdamW,
//     clip_grad_norm_, get_cosine_schedule_with_warmup) from the same initial weights (a LLaVA folder written
//     by the HF exporter's mapping, or the Llama folder `pipec prepare --init` writes), on the same micro-batches;
//     twice: as users run it (glibc's malloc defaults) and with the exported trainer's malloc settings.
// Each side's per-step time comes from its own metrics.jsonl (differences of consecutive `elapsed_s`; median
// after 2 warm-up steps) and its tokens from the `tokens` field; the largest relative loss difference over the
// common steps is the sanity check that all computed the same thing. Each side runs in its own process, one
// after another. The peer needs torch and transformers (`npm run setup:torch`); without them it is left out
// and the output says so.
//   node dist/bench/peer.bench.js [--workload tiny-llava|reference-lm]... [--steps N] [--backend NAME]... [--python PATH] [--keep]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from '../compiler/service/service.js';
import { BACKEND_NAMES, probeBackends, type BackendProbe, type ConcreteBackend } from '../runtime/backend/backends.js';
import { tensorSource } from '../runtime/export/hf.js';
import { planLlava } from '../runtime/export/hf-llava.js';
import { readMetrics, type StepMetrics } from '../runtime/train/metrics.js';
import { writeShardedSafetensors } from '../runtime/weights/shards.js';
import { SPECIALS, VocabTokenizer } from '../runtime/data/vocab-tokenizer.js';
import { Rng } from '../runtime/random.js';
import { repo } from '../test/paths.js';
import { median } from './stats.js';

const STAGE = 'pretrain';
const WARMUP = 2;

const args = process.argv.slice(2);
if (args[0] === '--probe-backends') {
  // In a child, so that libtensorflow (and its start-up log) is not loaded into the benchmark's own process
  console.log(JSON.stringify(await probeBackends()));
  process.exit(0);
}
function option(name: string): string[] {
  const out: string[] = [];
  args.forEach((a, i) => {
    if (a === name && i + 1 < args.length) out.push(args[i + 1]!);
    else if (a.startsWith(`${name}=`)) out.push(a.slice(name.length + 1));
  });
  return out;
}
class BenchError extends Error {}
function fail(msg: string): never {
  throw new BenchError(msg);
}

function usage(msg: string): never {
  console.error(`bench:peer: ${msg}\nusage: node dist/bench/peer.bench.js [--workload tiny-llava|reference-lm]... [--steps N] [--backend NAME]... [--python PATH] [--keep]`);
  process.exit(2);
}

const STEPS = Number(option('--steps').pop() ?? 30);
if (!Number.isInteger(STEPS) || STEPS < WARMUP + 3) usage(`--steps must be an integer of at least ${WARMUP + 3} (2 warm-up steps, then the timed ones), got ${option('--steps').pop()}`);
// The project's venv (`npm run setup:torch`: torch and transformers) when there, else Debian's python3-torch (no transformers: no peer)
const PY_ARG = option('--python').pop() ?? process.env.PIPEC_PYTHON ?? (fs.existsSync(repo('.venv-torch/bin/python')) ? repo('.venv-torch/bin/python') : '/usr/bin/python3');
const PY = PY_ARG.includes('/') ? path.resolve(PY_ARG) : PY_ARG; // the trainer runs in another folder
const KEEP = args.includes('--keep');
const asked = option('--backend').flatMap((b) => b.split(',')).filter(Boolean);
for (const b of asked) if (!(BACKEND_NAMES as readonly string[]).includes(b) || b === 'auto') usage(`--backend must name one of ${BACKEND_NAMES.filter((n) => n !== 'auto').join(', ')}, got ${b}`);

interface Side {
  label: string;
  runDir: string;
  /** Wall time of the whole process, start-up included. */
  wallS: number;
  note: string;
  rows: StepMetrics[];
}

/** Runs a command to completion; exits the benchmark with its output when it fails. */
function run(cmd: string, argv: string[], cwd: string, what: string, env: Record<string, string> = {}): { out: string; seconds: number } {
  const t0 = performance.now();
  const r = spawnSync(cmd, argv, { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1', ...env } });
  const seconds = (performance.now() - t0) / 1000;
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0) fail(`${what} failed (exit ${r.status ?? r.signal}):\n${out.trim().split('\n').slice(-20).join('\n')}`);
  return { out, seconds };
}

/**
 * Per-step time and throughput of one side: the median difference of consecutive `elapsed_s` over the steps
 * after the warm-up, and the mean `tokens` of those steps over it. Without per-step timing: the wall time of
 * the whole process (start-up included), which the output says.
 */
function throughput(s: Side): { ms: number; tokensPerSec: number; how: string } {
  const timed = s.rows.slice(WARMUP);
  const tokens = timed.reduce((a, m) => a + m.tokens, 0) / timed.length;
  if (s.rows.every((m) => typeof m.elapsed_s === 'number')) {
    const dt = timed.map((m, i) => m.elapsed_s - s.rows[WARMUP + i - 1]!.elapsed_s);
    const ms = median(dt) * 1000;
    return { ms, tokensPerSec: tokens / (ms / 1000), how: 'median step' };
  }
  const ms = (s.wallS / s.rows.length) * 1000;
  return { ms, tokensPerSec: tokens / (ms / 1000), how: 'wall time incl. start-up (no per-step timing)' };
}

/** The model's initial weights (`pipec prepare --init`) as a transformers LLaVA folder (config.json and
 * model.safetensors, the HF exporter's names and config) that LlavaForConditionalGeneration loads. */
function writeLlavaFolder(program: string, prepared: string, out: string): void {
  const graph = compile({ file: program, configFiles: [], sets: [], lower: true }).graph;
  if (!graph) fail(`${program} does not compile`);
  const tokenizer = JSON.parse(fs.readFileSync(path.join(prepared, 'tokenizer.json'), 'utf8')) as { added_tokens?: { id: number; content: string }[]; model?: { vocab?: Record<string, number> } };
  const imageTokenId = tokenizer.added_tokens?.find((t) => t.content === '<image>')?.id ?? tokenizer.model?.vocab?.['<image>'];
  if (imageTokenId === undefined) fail(`${path.join(prepared, 'tokenizer.json')} has no <image> token`);
  const plan = planLlava(graph, graph.models[0]!, { imageTokenId, tokenIds: {}, graphFile: '' });
  fs.mkdirSync(out, { recursive: true });
  writeShardedSafetensors(out, plan.tensors.map((t) => tensorSource(path.join(prepared, 'init'), t)), Infinity, { format: 'pt' });
  fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(plan.config, null, 2) + '\n');
}

const torchProbe = fs.existsSync(PY) ? spawnSync(PY, ['-c', 'import torch; print(torch.__version__, torch.get_num_threads())'], { encoding: 'utf8' }) : undefined;
if (!torchProbe || torchProbe.status !== 0) {
  const why = torchProbe ? torchProbe.stderr.trim().split('\n').pop() : `${PY} does not exist`;
  console.log(`peer benchmark skipped: ${PY} cannot import torch (${why}).`);
  console.log('Install PyTorch for it (Debian: apt-get install -y python3-torch) or name another interpreter with --python PATH.');
  process.exit(0);
}
const [torchVersion, torchThreads] = torchProbe.stdout.trim().split(/\s+/);
const transformersProbe = spawnSync(PY, ['-c', 'import transformers; print(transformers.__version__)'], { encoding: 'utf8' });
const transformersVersion = transformersProbe.status === 0 ? transformersProbe.stdout.trim() : undefined;

// Backends: the ones asked for, else wasm (the fresh-clone default) and tensorflow when it loads here.
const probeRun = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--probe-backends'], { encoding: 'utf8' });
const probeLine = probeRun.stdout.split('\n').reverse().find((l) => l.startsWith('['));
if (probeRun.status !== 0 || !probeLine) {
  console.error(`bench:peer: probing the backends failed (exit ${probeRun.status}):\n${probeRun.stderr.trim().split('\n').slice(-10).join('\n')}`);
  process.exit(1);
}
const probes = JSON.parse(probeLine) as BackendProbe[];
const wanted: ConcreteBackend[] = asked.length ? (asked as ConcreteBackend[]) : ['wasm', ...(probes.some((p) => p.name === 'tensorflow' && p.available) ? (['tensorflow'] as const) : [])];
const unavailable = wanted.map((b) => probes.find((p) => p.name === b)!).filter((p) => !p.available);
const backends = wanted.filter((b) => !unavailable.some((p) => p.name === b));

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pipec-bench-peer-'));
const pipec = repo('bin/pipec.js');

interface Workload {
  name: string;
  /** What the output's first line says it is. */
  title: string;
  /** transformers' class of the peer. */
  peer: 'llava' | 'llama';
  /** The program's file, written into `dir` where the workload makes its own. */
  program(dir: string): string;
}

const WORKLOADS: Workload[] = [
  { name: 'tiny-llava', title: 'pipelines/tiny-llava.pipe (0.53M parameters, a LLaVA with a ViT)', peer: 'llava', program: () => repo('pipelines/tiny-llava.pipe') },
  {
    name: 'reference-lm',
    title: 'bench/reference-lm.pipe (7.25M parameters, a llama) on generated text, 8 x 128 tokens a step',
    peer: 'llama',
    program(dir) {
      // 126 random words a record: with the plain template's separator and </s>, 128 tokens each
      const rng = new Rng(7);
      const records = Array.from({ length: 8 * (STEPS + 2) }, (_, i) => ({
        id: String(i),
        conversations: [{ from: 'human', value: '' }, { from: 'gpt', value: Array.from({ length: 126 }, () => `w${rng.int(7000)}`).join(' ') }],
      }));
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'text.json'), JSON.stringify(records));
      // the words w0 .. w6999 after pipec's specials, as the HF WordLevel tokenizer.json pipec writes for its own datasets
      const words = new VocabTokenizer([...SPECIALS, ...Array.from({ length: 7000 }, (_, i) => `w${i}`)]);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(words.toTokenizerJson()));
      const file = path.join(dir, 'reference-lm.pipe');
      fs.writeFileSync(file, `${fs.readFileSync(repo('bench/reference-lm.pipe'), 'utf8')}
import "std/data"
dataset text = llava_json("text.json", tokenizer: "tokenizer.json", require_image: false)
stage ${STAGE} {
  model: reference_lm
  train: [lm]
  freeze: []
  data: text
  optimizer: adamw(lr: 1e-3, weight_decay: 0.01)
  schedule: cosine(warmup_ratio: 0.05)
  batch: 8
  epochs: 1
  max_length: 128
  precision: fp32
  devices: cpu
}
`);
      return file;
    },
  },
];
const askedWorkloads = option('--workload').flatMap((w) => w.split(',')).filter(Boolean);
for (const w of askedWorkloads) if (!WORKLOADS.some((x) => x.name === w)) usage(`--workload must name one of ${WORKLOADS.map((x) => x.name).join(', ')}, got ${w}`);
const workloads = askedWorkloads.length ? WORKLOADS.filter((w) => askedWorkloads.includes(w.name)) : WORKLOADS;

function bench(w: Workload): void {
  const dir = path.join(work, w.name);
  const program = w.program(path.join(dir, 'program'));
  const peerName = w.peer === 'llava' ? 'transformers LLaVA loop' : 'transformers Llama loop';
  console.log(`\n== ${w.name}: ${w.title}, stage ${STAGE}; the first ${STEPS} training steps in pipec, in the exported PyTorch program and in transformers' ${w.peer === 'llava' ? 'LlavaForConditionalGeneration' : 'LlamaForCausalLM'} with a plain PyTorch loop`);
  const exportDir = path.join(dir, 'torch'), data = path.join(dir, 'data');
  run(process.execPath, [pipec, 'export', program, '--target', 'torch', '-o', exportDir], repo(), 'pipec export');
  run(process.execPath, [pipec, 'prepare', program, '--stage', STAGE, '-o', path.join(data, STAGE), '--init'], repo(), 'pipec prepare');

  const sides: Side[] = [];
  for (const b of backends) {
    const runDir = path.join(dir, `pipec-${b}`);
    const r = run(process.execPath, [pipec, 'run', program, '--out', runDir, '--backend', b, '--stop-after', String(STEPS)], repo(), `pipec run --backend ${b}`);
    const note = r.out.split('\n').find((l) => l.startsWith('backend ')) ?? `backend ${b}`;
    sides.push({ label: `pipec ${b}`, runDir, wallS: r.seconds, note, rows: readMetrics(runDir) });
  }
  const torchDir = path.join(dir, 'torch-run');
  const t = run(PY, [path.join(exportDir, 'train.py'), '--data', data, '--out', torchDir, '--init', path.join(data, STAGE, 'init'), '--stop-after', String(STEPS), '--device', 'cpu'], exportDir, 'the exported train.py');
  const torch: Side = { label: 'torch (exported train.py)', runDir: torchDir, wallS: t.seconds, note: `torch ${torchVersion}, ${torchThreads} thread${torchThreads === '1' ? '' : 's'} (torch.get_num_threads())`, rows: readMetrics(torchDir) };
  sides.push(torch);
  if (transformersVersion) {
    const peerDir = path.join(dir, 'peer-run');
    let hfDir = path.join(data, STAGE, 'init', 'lm'); // the Llama folder `pipec prepare --init` writes
    if (w.peer === 'llava') writeLlavaFolder(program, path.join(data, STAGE), (hfDir = path.join(dir, 'peer-llava')));
    const peerArgs = [repo('bench/peer/transformers_loop.py'), '--kind', w.peer, '--hf', hfDir, '--export', exportDir, '--data', data, '--stage', STAGE, '--steps', String(STEPS)];
    const p = run(PY, [...peerArgs, '--out', peerDir], dir, 'the transformers loop');
    const note = p.out.split('\n').find((l) => l.startsWith('peer: '))?.slice(6) ?? '';
    // The exported trainer tells glibc to keep freed memory (train_lib.py keep_freed_cpu_memory); the loop as
    // users run it has glibc's defaults, and the same loop with the exported trainer's settings is shown too.
    const tunedDir = path.join(dir, 'peer-run-malloc');
    const tuned = run(PY, [...peerArgs, '--out', tunedDir], dir, 'the transformers loop (malloc settings)', { MALLOC_MMAP_THRESHOLD_: String(32 * 1024 * 1024), MALLOC_TRIM_THRESHOLD_: String(2 ** 31 - 1) });
    sides.push({ label: `${peerName.replace(' loop', '')} +malloc`, runDir: tunedDir, wallS: tuned.seconds, note: "the same loop started with MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647, the exported trainer's malloc settings", rows: readMetrics(tunedDir) });
    sides.push({ label: peerName, runDir: peerDir, wallS: p.seconds, note: `transformers ${transformersVersion}; ${note}; glibc's default malloc settings`, rows: readMetrics(peerDir) });
  } else console.log(`(transformers loop not measured: ${PY} cannot import transformers; npm run setup:torch installs it)`);
  for (const s of sides) if (s.rows.length !== STEPS || s.rows.some((m) => m.stage !== STAGE)) fail(`${s.label} wrote ${s.rows.length} metric rows (stages ${[...new Set(s.rows.map((m) => m.stage))].join(', ')}) in ${s.runDir}, expected ${STEPS} of stage ${STAGE}`);

  const stats = sides.map((s) => ({ s, ...throughput(s) }));
  const ref = stats[stats.length - 1]!; // the transformers loop where it ran, else the exported program
  const hows = [...new Set(stats.map((x) => x.how))];
  console.log(`per-step time: ${hows.includes('median step') ? `median over steps ${WARMUP + 1}..${STEPS} (${WARMUP} warm-up steps dropped) of the difference of consecutive elapsed_s in each side's metrics.jsonl` : ''}${hows.filter((h) => h !== 'median step').map((h) => `; ${h}`).join('')}`);
  console.log(`tokens/s: mean \`tokens\` per step over those steps / median step time (${Math.round(ref.s.rows.slice(WARMUP).reduce((a, m) => a + m.tokens, 0) / (STEPS - WARMUP))} tokens a step)`);
  console.log(`ratios: tokens/s over the ${ref.s.label}'s`);
  console.log('  side                         step ms   tokens/s      ratio   process s (incl. start-up)');
  for (const x of stats) {
    console.log(`  ${x.s.label.padEnd(26)} ${x.ms.toFixed(1).padStart(9)} ${x.tokensPerSec.toFixed(0).padStart(10)} ${`${(x.tokensPerSec / ref.tokensPerSec).toFixed(2)}x`.padStart(10)}   ${x.s.wallS.toFixed(1).padStart(8)}${x.how === 'median step' ? '' : `  (${x.how})`}`);
  }
  for (const x of stats) console.log(`  ${x.s.label}: ${x.s.note}`);
  for (const x of stats.filter((x) => x.s !== torch)) {
    const n = Math.min(x.s.rows.length, torch.rows.length);
    let worst = 0, at = 0;
    for (let i = 0; i < n; i++) {
      const a = x.s.rows[i]!.loss, b = torch.rows[i]!.loss;
      const r = Math.abs(a - b) / Math.max(Math.abs(a), 1e-12);
      if (r > worst) (worst = r), (at = i + 1);
    }
    const sameTokens = x.s.rows.every((m, i) => m.tokens === torch.rows[i]!.tokens);
    console.log(`loss check, ${x.s.label} vs the exported program: max relative loss difference ${worst.toExponential(2)} over ${n} common steps (at step ${at}); tokens per step ${sameTokens ? 'identical' : 'DIFFER'}`);
  }
}

try {
  console.log(`peer benchmark: workloads ${workloads.map((w) => w.name).join(', ')}; ${new Date().toISOString()}`);
  console.log(`${os.availableParallelism()} cores here (${os.cpus()[0]?.model.trim() ?? 'unknown CPU'}); torch ${torchVersion} from ${PY} (${torchThreads} thread${torchThreads === '1' ? '' : 's'} by its default here, one process, fp32, CPU); Node ${process.version}`);
  for (const p of unavailable) console.log(`(backend ${p.name} not measured: ${p.detail})`);
  if (!asked.length && !backends.includes('tensorflow')) console.log(`(backend tensorflow not measured: ${probes.find((p) => p.name === 'tensorflow')?.detail ?? 'unknown'})`);
  for (const w of workloads) bench(w);
  if (KEEP) console.log(`\nkept ${work}`);
} catch (e) {
  if (!(e instanceof BenchError)) throw e;
  console.error(`bench:peer: ${e.message}${KEEP ? `\n(kept ${work})` : ''}`);
  process.exitCode = 1;
} finally {
  if (!KEEP) fs.rmSync(work, { recursive: true, force: true });
}
