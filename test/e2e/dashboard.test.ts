// The run's views of metrics.jsonl: TensorBoard event files (RUN/tb, read back by our own reader and by
// TensorBoard's) and the dashboard page (RUN/dashboard.html: its data, its self-containment, its
// script's helpers, and the page itself rendered in headless Chromium). Runs test/runtime/tiny.pipe
// (2 stages, 24 + 8 steps, a held-out evaluation) once straight through and once killed and resumed.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { compile } from '../../compiler/service/service.js';
import { initBackend } from '../../runtime/backend/backends.js';
import { DASHBOARD_FILE, dashboardFromRun, metricsOf, type DashboardData } from '../../runtime/train/dashboard.js';
import { readEval, readMetrics } from '../../runtime/train/metrics.js';
import { Progress } from '../../runtime/train/progress.js';
import { runProgram } from '../../runtime/train/run.js';
import { readTensorBoardScalars, stepScalars, TB_DIR } from '../../runtime/train/tensorboard.js';
import { crc32c, decodeEvent, maskedCrc32c, readRecords, scalarsEvent, tfRecord } from '../../runtime/train/tfrecord.js';
import { runPython, tensorboardPython } from '../helpers/python.js';
import { unavailable } from '../helpers/required.js';
import { childEnv, tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const TINY = repo('test/runtime/tiny.pipe');
const quiet = new Progress({ write: () => true });
type Scalars = Map<string, [number, number][]>;

/** What the event files must hold for a run: every metrics.jsonl value under its tag, float32-rounded, and eval.jsonl's figures. */
function expectedScalars(runDir: string): Scalars {
  const want: Scalars = new Map();
  const add = (tag: string, step: number, value: number) => {
    if (!want.has(tag)) want.set(tag, []);
    want.get(tag)!.push([step, Math.fround(value)]);
  };
  const metrics = readMetrics(runDir);
  metrics.forEach((m, i) => {
    for (const s of stepScalars(m)) add(s.tag, i + 1, s.value);
  });
  for (const p of readEval(runDir)) {
    const at = metrics.findIndex((m) => m.stage_index === p.stage_index && m.step === p.step);
    add(`eval/${p.name}`, at + 1, p.value);
  }
  return want;
}

function eventFiles(runDir: string): string[] {
  return fs.readdirSync(path.join(runDir, TB_DIR)).filter((n) => n.startsWith('events.out.tfevents.')).sort().map((n) => path.join(runDir, TB_DIR, n));
}

/** TensorBoard's EventAccumulator on RUN/tb (test/reference/tensorboard_scalars.py). */
function tensorboardRead(python: string, dir: string): { file_version: number | null; scalars: Scalars } {
  const r = JSON.parse(runPython(python, [repo('test/reference/tensorboard_scalars.py'), dir])) as { file_version: number | null; scalars: Record<string, [number, number][]> };
  return { file_version: r.file_version, scalars: new Map(Object.entries(r.scalars)) };
}

function sorted(s: Scalars): [string, [number, number][]][] {
  return [...s].sort(([a], [b]) => a.localeCompare(b));
}

function pageData(runDir: string): DashboardData {
  const html = fs.readFileSync(path.join(runDir, DASHBOARD_FILE), 'utf8');
  const m = /<script id="pipec-run-data" type="application\/json">([^<]*)<\/script>/.exec(html);
  assert.ok(m, 'the page holds its data block');
  return JSON.parse(m[1]!) as DashboardData;
}

describe('run dashboard and TensorBoard event files', function () {
  this.timeout(600_000);
  let straight: string, resumed: string;

  before(async () => {
    await initBackend('wasm');
    const r = compile({ file: TINY, configFiles: [], sets: [], lower: true });
    assert.ok(r.graph);
    const base = { graph: r.graph, baseDir: repo('test/runtime'), backend: 'wasm' as const, out: quiet };
    straight = path.join(tmpDir('straight'), 'run');
    await runProgram({ ...base, runDir: straight });
    // killed after step 10 of align (its last checkpoint: step 8) mid-append, then resumed
    resumed = path.join(tmpDir('resumed'), 'run');
    await runProgram({ ...base, runDir: resumed, stopAfterSteps: 10 });
    assert.equal(pageData(resumed).status, 'stopped');
    const [first] = eventFiles(resumed);
    fs.appendFileSync(first!, tfRecord(scalarsEvent(0, 11, [{ tag: 'train/loss', value: 1 }])).subarray(0, 20)); // a torn record
    await runProgram({ ...base, runDir: resumed, resume: true });
  });

  describe('TFRecord framing and protos', () => {
    it('CRC-32C matches the published check values; the mask is TFRecord\'s', () => {
      assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283); // the CRC catalogue's check value
      assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
      assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43); // RFC 3720 B.4: 32 bytes of 0xff
      const c = 0xe3069283;
      assert.equal(maskedCrc32c(Buffer.from('123456789')), ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0);
    });

    it('a record reads back; a torn or corrupted record ends the file there', () => {
      const a = scalarsEvent(1.5, 7, [{ tag: 'train/loss', value: 0.25 }, { tag: 'eval/x', value: -3 }]);
      const b = scalarsEvent(2.5, 300, [{ tag: 'train/loss', value: 0.125 }]);
      const file = Buffer.concat([tfRecord(a), tfRecord(b)]);
      assert.equal(file.length, a.length + b.length + 32);
      const { records, end } = readRecords(file);
      assert.deepEqual(records.map((r) => decodeEvent(r)), [
        { wallTime: 1.5, step: 7, scalars: [{ tag: 'train/loss', value: 0.25 }, { tag: 'eval/x', value: -3 }] },
        { wallTime: 2.5, step: 300, scalars: [{ tag: 'train/loss', value: 0.125 }] },
      ]);
      assert.equal(end, file.length);
      assert.equal(readRecords(file.subarray(0, file.length - 3)).records.length, 1, 'torn second record');
      const flipped = Buffer.from(file);
      flipped[tfRecord(a).length + 14]! ^= 1; // a byte of the second record's data
      assert.deepEqual(readRecords(flipped), { records: [records[0]], end: tfRecord(a).length });
    });
  });

  describe('RUN/tb', () => {
    it('our reader: every metrics.jsonl value under its tag at its global step, and the evaluation', () => {
      const got = readTensorBoardScalars(straight);
      const want = expectedScalars(straight);
      assert.deepEqual(sorted(got), sorted(want));
      // the figures themselves, not only their agreement: 32 steps, stage 1 from step 25, four accuracies at 32
      assert.deepEqual(got.get('train/loss')!.map(([s]) => s), Array.from({ length: 32 }, (_, i) => i + 1));
      assert.deepEqual(got.get('train/stage')!.filter(([, v]) => v === 1).map(([s]) => s)[0], 25);
      assert.deepEqual([...got.keys()].filter((t) => t.startsWith('eval/')).sort(), ['eval/accuracy/colour_en', 'eval/accuracy/colour_ja', 'eval/accuracy/shape_en', 'eval/accuracy/shape_ja']);
      assert.equal(got.get('eval/accuracy/colour_en')![0]![0], 32);
      const first = decodeEvent(readRecords(fs.readFileSync(eventFiles(straight)[0]!)).records[0]!);
      assert.equal(first.fileVersion, 'brain.Event:2');
    });

    it('TensorBoard\'s own reader (EventAccumulator) gets the same scalars, and rejects a corrupted CRC', function () {
      const tb = tensorboardPython();
      if ('why' in tb) unavailable(this, 'TensorBoard in Python', tb.why);
      const read = tensorboardRead(tb.python, path.join(straight, TB_DIR));
      assert.equal(read.file_version, 2);
      assert.deepEqual(sorted(read.scalars), sorted(expectedScalars(straight)));
      // the reader checks what we wrote: a flipped CRC bit in the first record's header and it reads nothing
      const bad = tmpDir('tb-bad');
      const [file] = eventFiles(straight);
      const bytes = fs.readFileSync(file!);
      bytes[8]! ^= 1;
      fs.writeFileSync(path.join(bad, path.basename(file!)), bytes);
      assert.equal(tensorboardRead(tb.python, bad).scalars.size, 0);
    });

    it('after a kill and --resume each step is there once, with the resumed values, for both readers', function () {
      const metrics = readMetrics(resumed);
      assert.equal(metrics.length, 32);
      const files = eventFiles(resumed);
      assert.equal(files.length, 2, 'the resumed process writes a file of its own');
      // the first file was cut back to the checkpoint (step 8), its torn record gone; the second opens with a restart at 9
      const earlier = readRecords(fs.readFileSync(files[0]!));
      assert.equal(earlier.end, fs.statSync(files[0]!).size);
      assert.equal(Math.max(...earlier.records.map((r) => decodeEvent(r).step)), 8);
      const restart = readRecords(fs.readFileSync(files[1]!)).records.map((r) => decodeEvent(r));
      assert.deepEqual([restart[1]!.sessionStatus, restart[1]!.step, restart[2]!.step], [1, 9, 9]);
      const want = sorted(expectedScalars(resumed));
      assert.deepEqual(sorted(readTensorBoardScalars(resumed)), want);
      const tb = tensorboardPython();
      if ('why' in tb) unavailable(this, 'TensorBoard in Python', tb.why);
      assert.deepEqual(sorted(tensorboardRead(tb.python, path.join(resumed, TB_DIR)).scalars), want);
    });
  });

  describe('RUN/dashboard.html', () => {
    it('holds metrics.jsonl and eval.jsonl as they are, and the program\'s stages', () => {
      for (const dir of [straight, resumed]) {
        const d = pageData(dir);
        assert.equal(d.status, 'finished');
        assert.deepEqual(metricsOf(d), readMetrics(dir));
        assert.deepEqual(d.eval, readEval(dir));
        assert.deepEqual(d.stages, [{ name: 'align', planned_steps: 24 }, { name: 'finetune', planned_steps: 8 }]);
        // the page a finished run's folder alone gives (dashboardFromRun: for a run written elsewhere) is the same
        const again = dashboardFromRun(dir);
        assert.deepEqual({ ...again, generated: '', refresh_s: 0 }, { ...d, generated: '', refresh_s: 0 });
      }
      assert.equal(readEval(straight).length, 4);
      assert.equal(readEval(resumed).length, 4, 'the resumed run evaluates once (two kinds x two languages)');
    });

    it('is self-contained: uPlot and the script inlined, nothing fetched', () => {
      const html = fs.readFileSync(path.join(straight, DASHBOARD_FILE), 'utf8');
      assert.doesNotMatch(html, /<(script|link|img|iframe|source)\b[^>]*\b(src|href)\s*=/i);
      assert.doesNotMatch(html, /@import|\bfetch\(|XMLHttpRequest|\burl\(\s*['"]?(https?:|\/\/)/i);
      // the only addresses are XML namespace names (uPlot makes SVG elements) and uPlot's licence header: nothing loads them
      assert.deepEqual([...new Set(html.match(/https?:\/\/[^\s"'`)]+/g) ?? [])].filter((u) => !u.startsWith('http://www.w3.org/') && u !== 'https://github.com/leeoniya/uPlot'), []);
      assert.match(html, /var uPlot\s*=/, 'uPlot inlined');
      assert.match(html, /PipecDashboard/, 'the page script inlined');
    });

    it('its smoothing is TensorBoard\'s debiased EMA, restarted per stage; decimation keeps the extremes', () => {
      const ctx: { PipecDashboard?: { ema: (v: (number | null)[], w: number, s?: number[]) => number[]; stageStarts: (s: number[]) => number[]; decimate: (x: number[], c: number[][], b: number) => { xs: number[]; columns: number[][] }; fmtTicks: (v: number[]) => string[] } } = {};
      vm.runInNewContext(fs.readFileSync(repo('runtime/train/dashboard/page.js'), 'utf8'), ctx);
      const inVm = ctx.PipecDashboard!;
      // arrays made in the vm's realm have its Array.prototype: copied here for deepEqual
      const D = {
        ema: (v: (number | null)[], w: number, st?: number[]) => [...inVm.ema(v, w, st)],
        stageStarts: (st: number[]) => [...inVm.stageStarts(st)],
        fmtTicks: (v: number[]) => [...inVm.fmtTicks(v)],
        decimate: (x: number[], c: number[][], b: number) => {
          const d = inVm.decimate(x, c, b);
          return { xs: [...d.xs], columns: d.columns.map((col) => [...col]) };
        },
      };
      const got = D.ema([1, 2, 3, 10, 20], 0.5, [0, 3]);
      const want = [1, (0.25 + 0.5 * 2) / 0.75, (0.625 + 1.5) / 0.875, 10, (2.5 + 10) / 0.75];
      got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-12, `ema[${i}] ${v} vs ${want[i]}`));
      assert.deepEqual(D.ema([2, 2, 2], 0.9), [2, 2, 2]);
      assert.deepEqual(D.ema([1, null, 3], 0), [1, null, 3]);
      assert.deepEqual(D.stageStarts([0, 0, 1, 1, 1, 3]), [0, 2, 5]);
      assert.deepEqual(D.fmtTicks([0, 5000, 10000, 15000]), ['0', '5k', '10k', '15k']); // one format per axis
      assert.deepEqual(D.fmtTicks([0, 2000, 4000]), ['0', '2000', '4000']);
      assert.deepEqual(D.fmtTicks([0.0025, 0.005, 0.0001]), ['0.0025', '0.005', '1e-4']);
      const xs = Array.from({ length: 100_000 }, (_, i) => i + 1);
      const ys = xs.map((x) => Math.sin(x / 1000));
      ys[51_234] = 50;
      ys[70_001] = -50;
      const d = D.decimate(xs, [ys], 1000);
      assert.ok(d.xs.length <= 4000 && d.xs.length >= 1000, `${d.xs.length} points drawn`);
      assert.ok(d.xs.includes(51_235) && d.xs.includes(70_002), 'the spikes are drawn');
      assert.ok(d.xs.every((x, i) => i === 0 || x > d.xs[i - 1]!), 'in order');
      assert.deepEqual(d.columns[0]!.filter((_, i) => [51_235, 70_002].includes(d.xs[i]!)), [50, -50]);
    });

    it('renders in headless Chromium: every chart drawn, no script error', function () {
      const chromium = ['chromium', 'chromium-browser'].find((c) => spawnSync(c, ['--version'], { encoding: 'utf8' }).status === 0);
      if (!chromium) unavailable(this, 'Chromium (headless) for the dashboard page', 'apt-get install chromium');
      const profile = tmpDir('chromium');
      const r = spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', `--user-data-dir=${profile}`, '--virtual-time-budget=10000', '--enable-logging=stderr', '--v=0', '--dump-dom', `file://${path.join(straight, DASHBOARD_FILE)}`], { encoding: 'utf8', env: childEnv(), timeout: 120_000, maxBuffer: 64 << 20 });
      assert.equal(r.status, 0, r.stderr.slice(-3000));
      assert.doesNotMatch(r.stderr, /Uncaught|CONSOLE.*(Error|error)/, 'a script error');
      // loss, learning rate, gradient norm, throughput, evaluation: five uPlot charts, and a sixth for the
      // seconds steps waited for data when any step did (how long the image workers take varies by machine)
      const waited = readMetrics(straight).some((m) => (m.data_wait_s ?? 0) > 0);
      const charts = waited ? 6 : 5;
      assert.match(r.stdout, new RegExp(`<body data-ready="${charts}">`));
      assert.equal(r.stdout.match(/<canvas /g)?.length, charts);
      for (const label of ['global step (all stages)', 'learning rate', 'gradient norm', 'tokens / s', 'accuracy (%)', ...(waited ? ['Waiting for data'] : [])]) assert.ok(r.stdout.includes(label), label);
      assert.match(r.stdout, /<td>align<\/td>|align<\/td>/);
    });
  });
});
