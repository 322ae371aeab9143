// Run folders: the lock (a second holder is told who holds it; a stale lock is taken over by exactly one
// of several racing processes), what a run may use (a run of this program, of another, a folder of the
// user's files), the default folder a graph's `source` cannot move, and no write through a planted link.
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { initBackend } from '../runtime/backend/backends.js';
import { defaultRunDir } from '../cli/runtime-commands.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import { LOCK_FILE, RunLock, type LockHolder } from '../runtime/train/lock.js';
import { pipec } from './helpers/cli.js';
import { repo } from './paths.js';
import { runIn, SHORT, snapshot, TINY, tinyGraph, tmpDir } from './run-fixtures.js';

/** A pid that was running a moment ago and is not any more. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  assert.ok(r.pid);
  return r.pid;
}

function plantLock(dir: string, h: Partial<LockHolder>): LockHolder {
  const lock: LockHolder = { format: 'pipec.lock', pid: deadPid(), host: os.hostname(), started: '2025-01-01T00:00:00.000Z', command: 'pipec run old.pipe', token: `t${Math.random().toString(16).slice(2)}`, ...h };
  fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify(lock));
  return lock;
}

function refused(f: () => unknown, code: string): PipeRuntimeError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof PipeRuntimeError, String(e));
    assert.equal(e.code, code, e.render());
    return e;
  }
  assert.fail(`expected ${code}`);
}

describe('run folder lock', function () {
  this.timeout(120_000);

  it('a second holder gets PIPE9030 naming pid, host, start time and command; after release it is free', () => {
    const dir = tmpDir('lock');
    const a = RunLock.acquire(dir, 'pipec run a.pipe --out x');
    const e = refused(() => RunLock.acquire(dir, 'pipec run b.pipe'), 'PIPE9030');
    assert.match(e.message, new RegExp(`in use by another pipec run \\(pid ${process.pid} on host ${os.hostname()}, since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z: pipec run a\\.pipe --out x\\)`));
    assert.match(e.hint!, /wait for it to finish, or choose another --out/);
    a.release();
    assert.ok(!fs.existsSync(path.join(dir, LOCK_FILE)));
    RunLock.acquire(dir, 'again').release();
  });

  it('takes over a stale lock (this host, process gone), and one whose pid now names another process', () => {
    const dir = tmpDir('stale');
    const old = plantLock(dir, {});
    const l = RunLock.acquire(dir, 'new');
    assert.equal(l.tookOver?.token, old.token);
    l.release();
    if (fs.existsSync(`/proc/${process.pid}/stat`)) {
      plantLock(dir, { pid: process.pid, proc_start: '1' }); // our pid, but not our process's start time
      RunLock.acquire(dir, 'new').release();
    }
  });

  it('a lock from another host is refused (its liveness is unknown), the hint says how to clear it', () => {
    const dir = tmpDir('elsewhere');
    plantLock(dir, { host: 'gpu-node-7.example', pid: 4242 });
    const e = refused(() => RunLock.acquire(dir, 'x'), 'PIPE9030');
    assert.match(e.message, /pid 4242 on host gpu-node-7\.example/);
    assert.match(e.hint!, /another host.*delete .*run\.lock/);
  });

  it('of 4 processes taking over one stale lock at once, exactly one wins, in each of 4 rounds', async () => {
    const work = tmpDir('race');
    const script = path.join(work, 'taker.mjs');
    fs.writeFileSync(script, `import * as fs from 'node:fs';
import { RunLock } from ${JSON.stringify(pathToFileURL(repo('dist/runtime/train/lock.js')).href)};
const [dir, go] = process.argv.slice(2);
console.log('ready');
const tick = new Int32Array(new SharedArrayBuffer(4));
while (!fs.existsSync(go)) Atomics.wait(tick, 0, 0, 1); // all four start together (within a millisecond)
try {
  const l = RunLock.acquire(dir, 'taker ' + process.pid);
  console.log('won ' + process.pid);
  const held = setInterval(() => fs.existsSync(go + '.done') && (l.release(), clearInterval(held)), 5); // hold it until all have looked
} catch (e) { console.log('lost ' + e.code + ' ' + e.message); }
`);
    for (let round = 0; round < 4; round++) {
      const dir = path.join(work, `r${round}`), go = path.join(work, `go${round}`);
      fs.mkdirSync(dir);
      plantLock(dir, {});
      let ready = 0, decided = 0;
      const outs = await Promise.all(Array.from({ length: 4 }, () => new Promise<string>((resolve) => {
        const c = spawn(process.execPath, [script, dir, go], { env: { ...process.env, PIPEC_TEST_LOCK_PAUSE_MS: String(25 * Math.random()) } });
        let s = '';
        c.stdout.on('data', (d) => {
          s += d;
          if (String(d).includes('ready') && ++ready === 4) fs.writeFileSync(go, '');
          if (/won|lost/.test(String(d)) && ++decided === 4) fs.writeFileSync(`${go}.done`, '');
        });
        c.on('exit', () => resolve(s.replace('ready', '').trim()));
      })));
      const won = outs.filter((o) => o.startsWith('won '));
      assert.equal(won.length, 1, `round ${round}: ${outs.join(' | ')}`);
      const winner = won[0]!.slice(4);
      for (const o of outs.filter((x) => !x.startsWith('won '))) assert.match(o, new RegExp(`^lost PIPE9030 .*pid ${winner} on host`), `round ${round}`);
      assert.ok(!fs.existsSync(path.join(dir, LOCK_FILE)), 'the winner released it');
    }
  });
});

describe('run folder: what a run may use', function () {
  this.timeout(300_000);
  before(() => initBackend('wasm'));

  it('a new run into a folder holding this program\'s run is refused (PIPE9031) and changes nothing; the hint names --resume and --overwrite', async () => {
    const dir = tmpDir('same');
    assert.equal((await runIn(dir, { stopAfterSteps: 3 })).error, undefined);
    const before = snapshot(dir);
    const r = await runIn(dir);
    assert.equal(r.error?.code, 'PIPE9031', r.log);
    assert.match(r.error!.message, /already holds a run of this program \(its latest checkpoint is 00-align-step000002\)/);
    assert.match(r.error!.hint!, /--resume.*--overwrite/);
    assert.deepEqual(snapshot(dir), before);
  });

  it('another program\'s run is refused (PIPE9032); --overwrite replaces it and keeps files the run did not write', async () => {
    const dir = tmpDir('other');
    assert.equal((await runIn(dir, { stopAfterSteps: 3 })).error, undefined);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    const before = snapshot(dir);
    const other = tinyGraph([...SHORT, 'stage.align.optimizer.lr=3e-2']);
    const r = await runIn(dir, { graph: other });
    assert.equal(r.error?.code, 'PIPE9032', r.log);
    assert.match(r.error!.hint!, /--overwrite/);
    assert.deepEqual(snapshot(dir), before);
    const o = await runIn(dir, { graph: other, overwrite: true });
    assert.equal(o.error, undefined, o.error?.render());
    assert.match(o.log, /note: --overwrite: removed the earlier run \(its latest checkpoint is 00-align-step000002\)/);
    assert.equal(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8'), 'mine');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'checkpoints')).sort(), ['00-align-step000004', '00-align-step000006', '01-finetune-step000001', '01-finetune-step000002', 'latest.json']);
  });

  it('--out into a folder of the user\'s files is refused (PIPE9033), --overwrite included, and nothing is written', async () => {
    const dir = tmpDir('user');
    fs.writeFileSync(path.join(dir, 'thesis.tex'), 'x');
    fs.mkdirSync(path.join(dir, 'figures'));
    const before = snapshot(dir);
    for (const overwrite of [false, true]) {
      const r = await runIn(dir, { overwrite });
      assert.equal(r.error?.code, 'PIPE9033');
      assert.match(r.error!.message, /is not empty and is not a pipec run folder \(it holds "figures", "thesis\.tex"\)/);
      assert.deepEqual(snapshot(dir), before);
    }
    const resumed = await runIn(dir, { resume: true });
    assert.equal(resumed.error?.code, 'PIPE9033');
  });

  it('a graph whose source is ".." cannot make the working folder the run folder', () => {
    assert.equal(defaultRunDir(tinyGraph(), 'x/tiny.json'), path.join('runs', 'tiny'));
    for (const source of ['..', '.', '/', '', 'a/..', '../../etc']) {
      const g = { ...tinyGraph(), source };
      assert.equal(defaultRunDir(g, 'build/g.json'), path.join('runs', source === '../../etc' ? 'etc' : 'g'), source);
    }
    // the CLI, from a folder of the user's files: the run goes to runs/g, the folder is left alone
    const work = tmpDir('source');
    fs.writeFileSync(path.join(work, 'mine.txt'), 'x');
    fs.writeFileSync(path.join(work, 'g.json'), JSON.stringify({ ...tinyGraph(), source: '..' }));
    const r = pipec(['run', 'g.json', '--backend', 'wasm', '--stop-after', '1'], { cwd: work });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /run directory: runs\/g/);
    assert.deepEqual(fs.readdirSync(work).sort(), ['g.json', 'mine.txt', 'runs']);
    assert.ok(fs.existsSync(path.join(work, 'runs', 'g', 'metrics.jsonl')));
  });

  it('a lock removed by hand under a running process stops it before its next checkpoint (PIPE9037)', async () => {
    const dir = tmpDir('lost');
    const r = await runIn(dir, { hooks: { checkpointPhase: (phase, name) => void (phase === 'prune' && name.endsWith('step000002') && fs.rmSync(path.join(dir, LOCK_FILE))) } });
    assert.equal(r.error?.code, 'PIPE9037', r.log);
    assert.match(r.error!.message, /the lock on run folder ".*" is no longer this run's \(the lock file is gone\); the run stops before writing/);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'checkpoints')).sort(), ['00-align-step000002', 'latest.json']);
  });

  it('an --out that names a file, or cannot be created, is PIPE9028', async () => {
    const dir = tmpDir('file');
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    const file = await runIn(path.join(dir, 'f'));
    assert.equal(file.error?.code, 'PIPE9028');
    assert.match(file.error!.message, /is not a usable run directory: it is a file, not a folder/);
    const under = await runIn(path.join(dir, 'f', 'sub'));
    assert.equal(under.error?.code, 'PIPE9028');
    assert.match(under.error!.message, /cannot create or lock it: ENOTDIR/);
    // and a held lock stays PIPE9030
    const held = RunLock.acquire(dir, 'holder');
    assert.equal((await runIn(dir)).error?.code, 'PIPE9030');
    held.release();
  });

  it('--resume with --overwrite is a usage error (exit 2)', () => {
    const r = pipec(['run', TINY, '--resume', '--overwrite']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /give one of them/);
  });
});

describe('run folder: nothing is written through a link', function () {
  this.timeout(300_000);
  let base: string;
  before(async () => {
    await initBackend('wasm');
    base = tmpDir('links');
    assert.equal((await runIn(base, { stopAfterSteps: 3 })).error, undefined); // checkpoint at step 2, 3 metric lines
  });

  /** A copy of the interrupted run with `name` replaced by a link to a victim outside; resumes it. */
  async function planted(name: string, kind: 'file' | 'dir' | 'hard'): Promise<{ r: Awaited<ReturnType<typeof runIn>>; victim: string; before: Record<string, string> }> {
    const dir = tmpDir('planted');
    fs.cpSync(base, dir, { recursive: true });
    const outside = tmpDir('victim');
    const victim = path.join(outside, 'victim');
    if (kind === 'dir') fs.mkdirSync(victim);
    else fs.writeFileSync(victim, 'the user\'s file\n');
    const at = path.join(dir, name);
    fs.rmSync(at, { recursive: true, force: true });
    if (kind === 'hard') fs.linkSync(victim, at);
    else fs.symlinkSync(victim, at);
    const before = snapshot(outside);
    const r = await runIn(dir, { resume: true });
    assert.deepEqual(snapshot(outside), before, `${name}: the victim changed`);
    return { r, victim, before };
  }

  for (const name of ['metrics.jsonl', 'eval.jsonl', 'graph.json', 'tokenizer.json', 'run.json', 'dashboard.html', 'summary.json', 'checkpoints/latest.json']) {
    it(`${name} as a symbolic link: PIPE9034 naming it, its target untouched`, async () => {
      const { r } = await planted(name, 'file');
      assert.equal(r.error?.code, 'PIPE9034', r.log);
      assert.match(r.error!.message, new RegExp(`${name.replace('.', '\\.')}" is a symbolic link; pipec never writes a run's files through a link`));
    });
  }

  it('tb/ (TensorBoard\'s folder) as a symbolic link to a folder: PIPE9034, nothing written there', async () => {
    const { r } = await planted('tb', 'dir');
    assert.equal(r.error?.code, 'PIPE9034', r.log);
    assert.match(r.error!.message, /tb" is a symbolic link/);
  });

  it('an event file in tb/ as a symbolic link: PIPE9034 naming it (the resume would rewrite it), its target untouched', async () => {
    const events = fs.readdirSync(path.join(base, 'tb')).filter((n) => n.startsWith('events.out.tfevents.'));
    assert.equal(events.length, 1);
    const { r } = await planted(`tb/${events[0]}`, 'file');
    assert.equal(r.error?.code, 'PIPE9034', r.log);
    assert.match(r.error!.message, new RegExp(`${events[0]!.replace(/\./g, '\\.')}" is a symbolic link`));
  });

  it('checkpoints/ as a symbolic link to a folder: PIPE9034, nothing written there', async () => {
    const { r } = await planted('checkpoints', 'dir');
    assert.equal(r.error?.code, 'PIPE9034', r.log);
  });

  it('a checkpoint name as a link to a folder elsewhere is skipped, never written through', async () => {
    const { r } = await planted('checkpoints/00-align-step000004', 'dir');
    assert.equal(r.error, undefined, r.error?.render());
    assert.match(r.log, /warning PIPE9035: checkpoint "00-align-step000004" cannot be resumed from: it is a symbolic link/);
  });

  it('metrics.jsonl as a hard link to the user\'s file: the file is untouched', async () => {
    const { r } = await planted('metrics.jsonl', 'hard');
    assert.equal(r.error, undefined, r.error?.render()); // the resume rewrites metrics.jsonl by rename: the link is replaced, not written
  });
});

describe('link-safe writes (runtime/weights/atomic.ts)', () => {
  it('an append to a hard-linked file and an atomic write onto a symbolic link are refused; the targets keep their bytes', async () => {
    const { appendNoFollow, writeFileAtomic } = await import('../runtime/weights/atomic.js');
    const dir = tmpDir('atomic');
    const victim = path.join(dir, 'victim');
    fs.writeFileSync(victim, 'v');
    fs.linkSync(victim, path.join(dir, 'hard'));
    fs.symlinkSync(victim, path.join(dir, 'soft'));
    assert.throws(() => appendNoFollow(path.join(dir, 'hard'), 'x'), (e: PipeRuntimeError) => e.code === 'PIPE9034' && /hard link \(2 names share it\)/.test(e.message));
    assert.throws(() => appendNoFollow(path.join(dir, 'soft'), 'x'), (e: PipeRuntimeError) => e.code === 'PIPE9034');
    assert.throws(() => writeFileAtomic(path.join(dir, 'soft'), 'x'), (e: PipeRuntimeError) => e.code === 'PIPE9034');
    assert.equal(fs.readFileSync(victim, 'utf8'), 'v');
  });
});

