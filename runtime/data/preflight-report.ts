// `pipec check --data FILE.pipe`: the data pre-flight (preflight.ts) as a report -- per stage, the
// records, a histogram of tokens per record against max_length, and every record that would fail,
// located. Exit 1 when a stage could not train as its data stands (bad records without
// skip_bad_records, or fewer usable records than one batch).
import type { Graph } from '../../compiler/ir/graph.js';
import { failureSummary, preflightStages, renderFailure, stageFails, type StageCheck } from './preflight.js';
import { runTokenizer } from './run-tokenizer.js';

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** At most this many failing records are printed per dataset; the rest are counted by code. */
const LISTED = 1000;

export function preflightCommand(graph: Graph, baseDir: string, o: { format: 'text' | 'json' }, io: Io): { failed: boolean; json: unknown } {
  const t0 = performance.now();
  const { tokenizer } = runTokenizer(graph, baseDir);
  const checks = preflightStages({ graph, baseDir, tokenizer });
  const failed = checks.some(stageFails);
  const json = checks.map(({ recordLengths: _lengths, ...c }) => c);
  if (o.format === 'json') return { failed, json };
  for (const c of checks) io.out(stageReport(c));
  for (const c of checks) {
    if (c.sameAs !== undefined || !c.failures.length) continue;
    io.err(`\n${c.skipBadRecords ? `records of "${c.file}" that will be skipped (skip_bad_records):` : `records of "${c.file}" that would fail:`}\n`);
    for (const f of c.failures.slice(0, LISTED)) io.err(`${renderFailure(f)}\n`);
    if (c.failures.length > LISTED) io.err(`... and ${c.failures.length - LISTED} more (${byCode(c.failures.slice(LISTED))})\n`);
  }
  for (const c of checks) if (c.problem) io.err(`${renderFailure(c.problem)}\n`);
  const records = checks.filter((c) => c.sameAs === undefined).reduce((n, c) => n + c.records, 0);
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  io.err(failed
    ? `\ndata pre-flight: FAILED: ${checks.filter(stageFails).map(failureSummary).join('; ')} (${records} records read in ${secs} s)\n`
    : `\ndata pre-flight: ${checks.length} stage${checks.length === 1 ? '' : 's'}, ${records} records read in ${secs} s: every stage can train\n`);
  return { failed, json };
}

/** A stage's header, token statistics and histogram. */
export function stageReport(c: StageCheck): string {
  const share = c.mixture ? `, source of mixture ${c.mixture.name} (${c.mixture.ratio !== undefined ? `ratio ${c.mixture.ratio}` : `${c.mixture.count} per epoch`})` : '';
  const head = `stage ${c.stage}: dataset ${c.dataset} ("${c.file}")${share}, max_length ${c.maxLength}, batch ${c.batch}`;
  if (c.sameAs !== undefined) return `${head}\n  the same records as stage ${c.sameAs}\n\n`;
  const passed = c.lengthCounts.reduce((n, [, k]) => n + k, 0);
  const lines = [head, `  ${c.records} records: ${passed} pass${c.failures.length ? `, ${c.failures.length} ${c.skipBadRecords ? 'to skip' : 'fail'} (${byCode(c.failures)})` : ''}`];
  if (passed) {
    const at = (q: number) => quantile(c.lengthCounts, passed, q);
    lines.push(`  tokens per record (image tokens included): min ${at(0)}, median ${at(0.5)}, p95 ${at(0.95)}, max ${at(1)}`);
    lines.push(...histogram(c.lengthCounts, c.maxLength).map((l) => `  ${l}`));
  }
  return `${lines.join('\n')}\n\n`;
}

/** Records per bin of tokens, 16 equal bins over 1..max_length, from the first bin used to the last. */
export function histogram(counts: readonly [number, number][], maxLength: number, bins = 16): string[] {
  if (!counts.length) return [];
  const width = Math.max(1, Math.ceil(maxLength / bins));
  const binOf = (n: number) => Math.min(Math.floor((Math.max(1, n) - 1) / width), Math.ceil(maxLength / width) - 1);
  const per = new Map<number, number>();
  for (const [n, k] of counts) per.set(binOf(n), (per.get(binOf(n)) ?? 0) + k);
  const first = binOf(counts[0]![0]), last = binOf(counts[counts.length - 1]![0]);
  const most = Math.max(...per.values());
  const label = (b: number) => `${b * width + 1}-${Math.min((b + 1) * width, maxLength)}`;
  const labelWidth = label(last).length;
  const out: string[] = [];
  for (let b = first; b <= last; b++) {
    const k = per.get(b) ?? 0;
    out.push(`${label(b).padStart(labelWidth)} |${k ? ` ${'#'.repeat(Math.max(1, Math.round((k / most) * 40)))} ${k}` : ''}`);
  }
  return out;
}

/** The token count below which a fraction q of the records lie. */
function quantile(counts: readonly [number, number][], total: number, q: number): number {
  const target = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const [n, k] of counts) if ((seen += k) >= target) return n;
  return counts[counts.length - 1]![0];
}

function byCode(failures: readonly { code: string }[]): string {
  const n = new Map<string, number>();
  for (const f of failures) n.set(f.code, (n.get(f.code) ?? 0) + 1);
  return [...n].map(([code, k]) => `${k} ${code}`).join(', ');
}
