// The property every generated text must have, for the property test (test/fuzz.test.ts) and
// `npm run fuzz` (run.ts). compile() (parse + check + lower) of any text:
//   - returns; nothing throws (UsageError is only for a file that cannot be read, and here the text is
//     always given);
//   - every diagnostic has a PIPEnnnn code, a known severity and a non-empty message of at most 500
//     characters;
//   - every range (the diagnostic's, its related locations', its fixes') lies inside the document it names,
//     and in the fuzzed file its line:column agrees with its offset, recomputed from the text;
//   - a file has at most 100 diagnostics and then one PIPE1015, its last;
//   - a program without errors lowers to a graph.
// checkText also says how far the text got (what `Tally` counts), so a test can tell that a generator
// reaches the parts of the compiler it is meant for.
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { M } from '../../compiler/diagnostics/catalogue.js';
import type { Diagnostic } from '../../compiler/diagnostics/diagnostic.js';
import type { Range } from '../../compiler/diagnostics/source.js';
import { compile, MAX_DIAGNOSTICS_PER_FILE } from '../../compiler/service/service.js';
import { REPO_ROOT, repo } from '../paths.js';

/** A file that does not exist: compile() gets its text, and relative paths resolve next to the shipped pipelines. */
const FILE = repo('pipelines/__fuzz__.pipe');
const SHOWN = path.relative(REPO_ROOT, FILE).split(path.sep).join('/');
const SEVERITIES = new Set(['error', 'warning', 'info']);

/** Line and column (1-based, UTF-16 units) of an offset, computed the slow, obvious way. */
export function lineCol(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

function checkRange(what: string, r: Range, sources: ReadonlyMap<string, { text: string }>, fuzzed: string): void {
  const text = r.file === SHOWN ? fuzzed : sources.get(r.file)?.text;
  assert.ok(text !== undefined, `${what} names ${JSON.stringify(r.file)}, which is not among the result's sources`);
  const { start, end } = r;
  assert.ok(Number.isInteger(start.offset) && Number.isInteger(end.offset), `${what}: offsets ${start.offset}..${end.offset} are not integers`);
  assert.ok(0 <= start.offset && start.offset <= end.offset && end.offset <= text.length, `${what}: range ${start.offset}..${end.offset} is outside 0..${text.length} of ${r.file}`);
  assert.deepEqual({ line: start.line, column: start.column }, lineCol(text, start.offset), `${what}: start ${start.line}:${start.column} disagrees with offset ${start.offset}`);
  assert.deepEqual({ line: end.line, column: end.column }, lineCol(text, end.offset), `${what}: end ${end.line}:${end.column} disagrees with offset ${end.offset}`);
}

/** How far a text got: stopped by a syntax error, checked with errors, or clean (and lowered). */
export type Outcome = 'syntax' | 'errors' | 'clean';

export interface Tally {
  programs: number;
  outcomes: Record<Outcome, number>;
  /** Every code reported, with how many programs reported it. */
  codes: Map<string, number>;
}

export const newTally = (): Tally => ({ programs: 0, outcomes: { syntax: 0, errors: 0, clean: 0 }, codes: new Map() });

export interface Checked {
  outcome: Outcome;
  diagnostics: Diagnostic[];
}

/** compile() the text as the fuzzed file and assert the property; counts it in `tally` when given. */
export function checkText(text: string, tally?: Tally): Checked {
  // Anything compile() throws fails the property; fast-check reports it with the shrunk input.
  const r = compile({ file: FILE, text, lower: true, cwd: REPO_ROOT });
  const perFile = new Map<string, Diagnostic[]>();
  for (const d of r.diagnostics as Diagnostic[]) {
    const what = `${d.code} "${d.message}"`;
    assert.match(d.code, /^PIPE\d{4}$/, `bad code in ${what}`);
    assert.ok(typeof d.message === 'string' && d.message.trim().length > 0, `empty message for ${d.code}`);
    assert.ok(d.message.length <= 500 && (d.hint ?? '').length <= 500, `${d.code}: a message or hint of ${d.message.length} / ${d.hint?.length} characters`);
    assert.ok(SEVERITIES.has(d.severity), `${what}: unknown severity ${d.severity}`);
    checkRange(what, d.range, r.sources, text);
    for (const rel of d.related ?? []) checkRange(`${what}, related "${rel.message}"`, rel.range, r.sources, text);
    for (const fix of d.fixes ?? []) checkRange(`${what}, fix "${fix.title}"`, fix.range, r.sources, text);
    const ds = perFile.get(d.range.file) ?? [];
    ds.push(d);
    perFile.set(d.range.file, ds);
  }
  for (const [file, ds] of perFile) {
    assert.ok(ds.length <= MAX_DIAGNOSTICS_PER_FILE + 1, `${file}: ${ds.length} diagnostics`);
    const summaries = ds.filter((d) => d.code === M.TooManyDiagnostics.code);
    if (ds.length > MAX_DIAGNOSTICS_PER_FILE) assert.deepEqual(summaries, [ds[ds.length - 1]], `${file}: past ${MAX_DIAGNOSTICS_PER_FILE} diagnostics, the last is PIPE1015`);
    else assert.deepEqual(summaries, [], `${file}: PIPE1015 with only ${ds.length} diagnostics`);
  }
  const errors = r.diagnostics.filter((d) => d.severity === 'error');
  if (!errors.length) assert.ok(r.graph, 'a program without errors lowers to a graph');
  const syntax = errors.some((d) => d.code.startsWith('PIPE1') && d.code !== M.TooManyDiagnostics.code);
  const outcome: Outcome = syntax ? 'syntax' : errors.length ? 'errors' : 'clean';
  if (tally) {
    tally.programs++;
    tally.outcomes[outcome]++;
    for (const code of new Set(r.diagnostics.map((d) => d.code))) tally.codes.set(code, (tally.codes.get(code) ?? 0) + 1);
  }
  return { outcome, diagnostics: r.diagnostics };
}
