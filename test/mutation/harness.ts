// Mutation harness: proves the numerical tests fail on the bugs they exist to catch (mutations.ts).
// For each mutation: a copy of the compiled runtime with that one edit, then the mutation's test runs
// (mocha --bail, on the cpu backend, cheapest first) until one fails. The harness fails when a mutation
// survives every run, when an edit's text is not found exactly once (it would otherwise rot silently),
// when a mutated file is not valid JavaScript, or when an unmutated run does not pass with 0 pending.
//
//   npm run test:mutation                    (builds, then node dist/test/mutation/harness.js)
//   node dist/test/mutation/harness.js --only NAME[,NAME]   some mutations
//   node dist/test/mutation/harness.js --all  every mutation against every test of the three files, no
//                                             bail: lists each test that catches it (slow; for reviews)
//
// The copy lives in a temporary folder: dist/ copied, every other top-level entry of the repository
// linked, so node_modules, stdlib/ and .venv-torch resolve as in the repository. Python references are
// computed once and reused by every mutant (PIPEC_REFERENCE_CACHE, a folder of the harness's own).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../paths.js';
import { type Mutation, MUTATIONS } from './mutations.js';

interface RunResult {
  /** Full titles of the passing tests. */
  passes: string[];
  failures: { title: string; message: string }[];
  pending: number;
  seconds: number;
  status: number | null;
  output: string;
}

const args = process.argv.slice(2);
const all = args.includes('--all');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1]!.split(',') : null;
const selected = only ? MUTATIONS.filter((m) => only.includes(m.name)) : MUTATIONS;
if (only && selected.length !== only.length) throw new Error(`unknown mutation in --only: ${only.filter((n) => !MUTATIONS.some((m) => m.name === n)).join(', ')}`);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pipec-mutation-'));
const cache = path.join(work, 'reference-cache');
const copy = path.join(work, 'repo');
let runs = 0;

function prepareCopy(): void {
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist/runtime'))) throw new Error('dist/ is missing: build first (npx tsc -p .)');
  fs.mkdirSync(copy);
  fs.mkdirSync(cache);
  for (const entry of fs.readdirSync(REPO_ROOT))
    if (entry !== 'dist' && entry !== '.git') fs.symlinkSync(path.join(REPO_ROOT, entry), path.join(copy, entry));
  fs.cpSync(path.join(REPO_ROOT, 'dist'), path.join(copy, 'dist'), { recursive: true });
}

function runTests(file: string, grep: string | undefined, bail: boolean): RunResult {
  const report = path.join(work, `run-${++runs}.json`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [
    path.join(REPO_ROOT, 'node_modules/mocha/bin/mocha.js'), '--no-config', '--timeout', '600000', ...(bail ? ['--bail'] : []),
    '--reporter', 'json', '--reporter-option', `output=${report}`, ...(grep ? ['--grep', grep] : []), path.join(copy, 'dist', file),
  ], { cwd: copy, encoding: 'utf8', env: { ...process.env, PIPEC_TEST_BACKENDS: 'cpu', PIPEC_REFERENCE_CACHE: cache } });
  const seconds = (performance.now() - t0) / 1000;
  const output = `${r.stdout}\n${r.stderr}`;
  if (!fs.existsSync(report)) return { passes: [], failures: [{ title: '(mocha did not report)', message: output.slice(-2000) }], pending: 0, seconds, status: r.status, output };
  const json = JSON.parse(fs.readFileSync(report, 'utf8')) as { stats: { pending: number }; passes: { fullTitle: string }[]; failures: { fullTitle: string; err: { message?: string } }[] };
  return { passes: json.passes.map((t) => t.fullTitle), pending: json.stats.pending, failures: json.failures.map((f) => ({ title: f.fullTitle, message: (f.err.message ?? '').split('\n')[0]! })), seconds, status: r.status, output };
}

const TEST_FILES = [...new Set(MUTATIONS.flatMap((m) => m.caughtBy.map((c) => c.file)))];
const selection = (s: { file: string; grep?: string }) => `${s.file}${s.grep ? ` --grep "${s.grep}"` : ''}`;

/** One unmutated run must pass, run at least one test per grep, and skip none. */
function checkClean(file: string, greps: (string | undefined)[], problems: string[]): void {
  const union = greps.includes(undefined) ? undefined : [...new Set(greps)].map((g) => `(?:${g})`).join('|');
  const r = runTests(file, union, false);
  const line = `unmutated ${file}${union ? ` (${new Set(greps).size} selections)` : ''}: ${r.passes.length} passing, ${r.failures.length} failing, ${r.pending} pending (${r.seconds.toFixed(1)} s)`;
  console.log(line);
  if (r.failures.length || r.status !== 0) problems.push(`${line}: ${r.failures.map((f) => `${f.title}: ${f.message}`).join('; ') || r.output.slice(-1500)}`);
  else if (r.pending) problems.push(`${line}: skipped tests prove nothing (the reference tests need .venv-torch: npm run setup:torch)`);
  for (const g of new Set(greps)) if (g && !r.passes.some((t) => new RegExp(g).test(t))) problems.push(`${file} --grep "${g}" selects no test: update test/mutation/mutations.ts`);
}

/**
 * The unmutated copy passes what the mutants run: every mutation's first run, one mocha run per file
 * (its grep the union of theirs), now; a later run only when a mutant reaches it (see `ensureClean`).
 * With --all, the whole of every file.
 */
function baseline(problems: string[]): void {
  const byFile = new Map<string, (string | undefined)[]>();
  for (const s of all ? TEST_FILES.map((file) => ({ file, grep: undefined })) : selected.map((m) => m.caughtBy[0]!)) {
    byFile.set(s.file, [...(byFile.get(s.file) ?? []), s.grep]);
    clean.add(selection(s));
  }
  for (const [file, greps] of byFile) checkClean(file, greps, problems);
}

const clean = new Set<string>();
function ensureClean(s: { file: string; grep?: string }, problems: string[]): boolean {
  if (clean.has(selection(s))) return true;
  clean.add(selection(s));
  const before = problems.length;
  checkClean(s.file, [s.grep], problems);
  return problems.length === before;
}

function plant(m: Mutation): () => void {
  const target = path.join(copy, 'dist', m.file);
  const pristine = fs.readFileSync(target, 'utf8');
  let text = pristine;
  for (const e of m.edits) {
    const count = text.split(e.find).length - 1;
    if (count !== 1) throw new Error(`${m.name}: "${e.find}" occurs ${count} times in dist/${m.file} (must be once): update test/mutation/mutations.ts`);
    text = text.replace(e.find, () => e.replace);
  }
  fs.writeFileSync(target, text);
  const check = spawnSync(process.execPath, ['--check', target], { encoding: 'utf8' });
  if (check.status !== 0) {
    fs.writeFileSync(target, pristine);
    throw new Error(`${m.name}: the mutated dist/${m.file} is not valid JavaScript:\n${check.stderr}`);
  }
  return () => fs.writeFileSync(target, pristine);
}

/** Plants one mutation and runs its tests: true when one fails. Throws when the mutation cannot be planted. */
function tryMutation(m: Mutation, problems: string[]): boolean {
  const restore = plant(m);
  try {
    if (all) {
      const caught = TEST_FILES.flatMap((file) => runTests(file, undefined, false).failures.map((f) => `${file}: ${f.title}`));
      console.log(`${caught.length ? 'caught  ' : 'SURVIVED'} ${m.name} (${m.what})${caught.map((c) => `\n           ${c}`).join('')}`);
      return caught.length > 0;
    }
    let spent = 0;
    for (const s of m.caughtBy) {
      if (!ensureClean(s, problems)) return false;
      const r = runTests(s.file, s.grep, true);
      spent += r.seconds;
      const f = r.failures[0];
      if (f) {
        console.log(`caught   ${m.name} in ${spent.toFixed(1)} s by ${f.title}\n           (${f.message.slice(0, 160)})`);
        return true;
      }
    }
    console.log(`SURVIVED ${m.name}: ${m.what}; no failure in ${m.caughtBy.map(selection).join(', ')}`);
    return false;
  } finally {
    restore();
  }
}

function main(): number {
  const t0 = performance.now();
  const problems: string[] = [];
  prepareCopy();
  baseline(problems);
  if (problems.length) {
    console.error(`\nmutation harness: the unmutated tests do not pass cleanly:\n${problems.join('\n')}`);
    return 1;
  }
  let caught = 0;
  for (const m of selected) {
    try {
      if (tryMutation(m, problems)) caught++;
      else problems.push(`${m.name} survived: ${m.what}`);
    } catch (e) {
      problems.push((e as Error).message);
      console.log(`ERROR    ${m.name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  console.log(`\nmutation harness: ${caught} of ${selected.length} mutations caught in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (problems.length) console.error(problems.join('\n'));
  return problems.length ? 1 : 0;
}

let code = 1;
try {
  code = main();
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(code);
