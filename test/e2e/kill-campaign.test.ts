// Acceptance for run folders and resume (issue 11, point 2), with real processes:
// - a kill -9 campaign: `pipec run` of the tiny program, checkpointing every step, SIGKILLed 12 times
//   (at each phase of a checkpoint write through the fault point, a few steps into training, and during
//   start-up) and resumed each time; it must end bit-identical (every step's loss, the final weights and
//   optimizer moments) to an uninterrupted run, and no kill may leave a checkpoint that resume skips;
// - two runs into one folder: one runs, the other is told who holds the folder and exits 1.
// The kill plan is drawn from a seed printed with the figures (PIPEC_CAMPAIGN_SEED=N replays one).
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../../runtime/random.js';
import { CHECKPOINT_NAME, checkpointName, type SavePhase } from '../../runtime/train/checkpoint.js';
import { dashboardFromRun } from '../../runtime/train/dashboard.js';
import { readEval, readMetrics } from '../../runtime/train/metrics.js';
import { readTensorBoardScalars } from '../../runtime/train/tensorboard.js';
import { pipec, startPipec } from '../helpers/cli.js';
import { tensorFiles, tinyGraph, tmpDir } from '../run-fixtures.js';

const ALIGN = 48, FINETUNE = 16;
const SETS = [`stage.align.steps=${ALIGN}`, 'stage.align.checkpoint.every=1', `stage.finetune.steps=${FINETUNE}`, 'stage.finetune.checkpoint.every=1'];
// The program compiled once (each process then starts ~0.5 s sooner), run on one wasm thread: the
// campaign starts 14 processes, and their start-up is most of its cost.
let GRAPH = '';
const runArgs = (dir: string, extra: string[] = []) => ['run', GRAPH, '--out', dir, '--backend', 'wasm', ...extra];
const PHASES: SavePhase[] = ['components', 'optimizer', 'manifest', 'publish', 'latest', 'prune'];

interface Child {
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

function start(args: string[], env: Record<string, string> = {}): Child {
  const proc = startPipec(args, { env: { PIPEC_WASM_THREADS: '1', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  return { proc, exited: new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal, stderr }))) };
}

const metricLines = (dir: string) => {
  try {
    return fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').split('\n').length - 1;
  } catch {
    return 0;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every step's figures that do not depend on the clock, for exact comparison. */
function stepRows(dir: string): unknown[] {
  return fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const { stage, step, loss, lm_loss, lr, grad_norm, tokens } = JSON.parse(l) as Record<string, unknown>;
    return [stage, step, loss, lm_loss, lr, grad_norm, tokens];
  });
}

/** --resume once a checkpoint exists, --overwrite once the folder is marked as a run, else a plain start. */
function nextArgs(dir: string): string[] {
  const ckpts = fs.existsSync(path.join(dir, 'checkpoints')) ? fs.readdirSync(path.join(dir, 'checkpoints')).filter((n) => CHECKPOINT_NAME.test(n)) : [];
  return ckpts.length ? ['--resume'] : fs.existsSync(path.join(dir, 'run.json')) ? ['--overwrite'] : [];
}

/** CPU seconds of this process's finished children (Linux /proc; NaN elsewhere): the campaign's cost on a busy machine. */
function childCpuSeconds(): number {
  try {
    const f = fs.readFileSync('/proc/self/stat', 'utf8').slice(fs.readFileSync('/proc/self/stat', 'utf8').lastIndexOf(')') + 2).split(' ');
    return (Number(f[13]) + Number(f[14])) / 100; // cutime + cstime, in USER_HZ (100 on Linux)
  } catch {
    return NaN;
  }
}

describe('kill -9 campaign and concurrent runs (child processes)', function () {
  this.timeout(600_000);
  const cli = (args: string[]) => pipec(args, { env: { PIPEC_WASM_THREADS: '1' } });

  before(() => {
    GRAPH = path.join(tmpDir('campaign-graph'), 'tiny.json');
    fs.writeFileSync(GRAPH, JSON.stringify(tinyGraph(SETS)));
  });

  it('12 SIGKILLs (every checkpoint phase, mid-training, start-up) and resumes end bit-identical to an uninterrupted run', async () => {
    const seed = Number(process.env.PIPEC_CAMPAIGN_SEED ?? Math.floor(Math.random() * 1e9));
    const rng = new Rng(seed);
    const t0 = performance.now(), cpu0 = childCpuSeconds();
    const ref = tmpDir('campaign-ref');
    const r0 = cli(runArgs(ref));
    assert.equal(r0.status, 0, r0.stderr);
    const tRef = (performance.now() - t0) / 1000;

    // the plan: each checkpoint phase once, 4 kills a few steps into training, 2 during start-up; shuffled
    const plan: string[] = [...PHASES, 'steps', 'steps', 'steps', 'steps', 'startup', 'startup'];
    for (let i = plan.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [plan[i], plan[j]] = [plan[j]!, plan[i]!];
    }
    const dir = tmpDir('campaign');
    const logs: string[] = [];
    const done: string[] = [];
    for (const kind of plan) {
      let child: Child;
      if (PHASES.includes(kind as SavePhase)) {
        const n = 1 + rng.int(3);
        child = start(runArgs(dir, nextArgs(dir)), { PIPEC_FAULT_KILL_AT_CHECKPOINT: `${n}:${kind}` });
        done.push(`${kind}#${n}`);
      } else if (kind === 'steps') {
        const from = metricLines(dir), more = 1 + rng.int(4), delay = rng.next() * 60;
        child = start(runArgs(dir, nextArgs(dir)));
        const exitedEarly = child.exited.then(() => true);
        while (metricLines(dir) < from + more && !(await Promise.race([exitedEarly, sleep(3).then(() => false)])));
        await sleep(delay);
        child.proc.kill('SIGKILL');
        done.push(`steps+${more}`);
      } else {
        const delay = rng.next() * 1000;
        child = start(runArgs(dir, nextArgs(dir)));
        await sleep(delay);
        child.proc.kill('SIGKILL');
        done.push(`startup@${Math.round(delay)}ms`);
      }
      const r = await child.exited;
      logs.push(r.stderr);
      assert.equal(r.signal, 'SIGKILL', `seed ${seed}: round ${done.length} (${done.at(-1)}) was not killed (exit ${r.code}); the run may have finished early:\n${r.stderr.slice(-1500)}`);
    }
    const last = cli(runArgs(dir, nextArgs(dir)));
    logs.push(last.stderr);
    assert.equal(last.status, 0, `seed ${seed}, kills ${done.join(', ')}:\n${last.stderr}`);
    const seconds = (performance.now() - t0) / 1000, cpu = childCpuSeconds() - cpu0;

    const all = logs.join('\n');
    assert.doesNotMatch(all, /PIPE9035|internal error/, `seed ${seed}: a kill left a checkpoint that resume had to skip, or crashed:\n${all.slice(-3000)}`);
    assert.deepEqual(stepRows(dir), stepRows(ref), `seed ${seed}, kills ${done.join(', ')}: per-step figures differ from the uninterrupted run`);
    // the views of metrics.jsonl survive the kills too: each step once in the TensorBoard files (torn
    // records and redone steps dropped), one evaluation, the page holding every line
    const losses = readMetrics(dir).map((m, i) => [i + 1, Math.fround(m.loss)]);
    assert.deepEqual(readTensorBoardScalars(dir).get('train/loss'), losses, `seed ${seed}, kills ${done.join(', ')}: RUN/tb differs from metrics.jsonl`);
    assert.deepEqual(readEval(dir).map((p) => p.name), readEval(ref).map((p) => p.name), `seed ${seed}: eval.jsonl`);
    assert.equal(dashboardFromRun(dir).metrics.loss.length, losses.length);
    const final = checkpointName(1, 'finetune', FINETUNE);
    assert.deepEqual(tensorFiles(path.join(dir, 'checkpoints', final)), tensorFiles(path.join(ref, 'checkpoints', final)), `seed ${seed}: final weights or optimizer moments differ`);
    const summary = JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8')), refSummary = JSON.parse(fs.readFileSync(path.join(ref, 'summary.json'), 'utf8'));
    assert.deepEqual(summary.stages.map((s: { name: string; final_loss: number }) => [s.name, s.final_loss]), refSummary.stages.map((s: { name: string; final_loss: number }) => [s.name, s.final_loss]));
    const resumes = (all.match(/resuming from/g) ?? []).length, takeovers = (all.match(/took over the stale lock/g) ?? []).length;
    console.log(`      seed ${seed}: ${done.length} kills (${done.join(', ')}); ${resumes} resumes, ${takeovers} stale locks taken over; ` +
      `${stepRows(dir).length} steps bit-identical; ${seconds.toFixed(1)} s in all, ${cpu.toFixed(1)} CPU s in its processes (uninterrupted run ${tRef.toFixed(1)} s)`);
  });

  it('two runs started together into one folder: one trains, the other exits 1 with PIPE9030 naming it', async () => {
    const dir = tmpDir('twins');
    const [a, b] = [start(runArgs(dir)), start(runArgs(dir))];
    const [ra, rb] = await Promise.all([a.exited, b.exited]);
    const codes = [ra.code, rb.code].sort();
    assert.deepEqual(codes, [0, 1], `exits ${ra.code} / ${rb.code}:\n${ra.stderr.slice(-800)}\n---\n${rb.stderr.slice(-800)}`);
    const [winner, loser] = ra.code === 0 ? [a, rb] : [b, ra];
    assert.match(loser.stderr, new RegExp(`error PIPE9030: run folder ".*twins.*" is in use by another pipec run \\(pid ${winner.proc.pid} on host [^,]+, since \\d{4}-[\\d-]+T[\\d:.]+Z: pipec run .*tiny\\.json --out .*\\)`));
    assert.doesNotMatch(loser.stderr, /\n\s+at /); // no stack trace
    const steps = stepRows(dir).map((r) => (r as unknown[]).slice(0, 2).join(':'));
    assert.equal(new Set(steps).size, steps.length, 'a step was written twice');
    assert.equal(steps.length, ALIGN + FINETUNE);
  });

  it('a second run into a folder while the first trains is refused (exit 1) and the first finishes undisturbed', async () => {
    const dir = tmpDir('second');
    const first = start(runArgs(dir));
    while (metricLines(dir) < 2) await sleep(5);
    const second = cli(runArgs(dir, ['--resume']));
    assert.equal(second.status, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`error PIPE9030: .*\\(pid ${first.proc.pid} on host`));
    assert.match(second.stderr, /hint: wait for it to finish, or choose another --out/);
    const r = await first.exited;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(stepRows(dir).length, ALIGN + FINETUNE);
  });
});
