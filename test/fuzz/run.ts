// `npm run fuzz -- --runs 100000 [--seed N]`: the fuzz properties of test/fuzz/suite.ts with more programs
// than CI runs (shared out in the same proportions) and a new seed each time unless one is given. Prints a
// line per property (programs, time, how far they got, codes seen) and every failure with its seed,
// path and shrunk counterexample, so `--seed` reproduces it; exits 1 if any property failed.
import fc from 'fast-check';
import { newTally } from './property.js';
import { PROPERTIES, REGRESSIONS } from './suite.js';
import { checkText } from './property.js';

function option(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = Number(args[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${name} takes a whole number, got ${args[i + 1]}`);
  return v;
}

function main(args: string[]): number {
  const runs = option(args, '--runs') ?? 100_000;
  const seed = option(args, '--seed') ?? (Date.now() % 2 ** 31);
  const share = PROPERTIES.reduce((n, p) => n + p.runs, 0);
  console.log(`pipec fuzz: ${runs} programs over ${PROPERTIES.length} properties, seed ${seed}`);
  for (const r of REGRESSIONS) checkText(r.text);

  let failures = 0;
  let total = 0;
  const codes = new Set<string>();
  const started = Date.now();
  PROPERTIES.forEach((p, i) => {
    const numRuns = Math.max(1, Math.round((runs * p.runs) / share));
    const tally = newTally();
    const t0 = Date.now();
    // Each property its own seed, so a failure names the one to pass back with --seed.
    const details = fc.check(p.property(tally), { numRuns, seed: seed + i });
    const o = tally.outcomes;
    total += tally.programs;
    for (const c of tally.codes.keys()) codes.add(c);
    const pct = (n: number) => `${((100 * n) / Math.max(1, tally.programs)).toFixed(0)}%`;
    console.log(
      `${details.failed ? 'FAIL' : 'ok  '} ${p.name}\n     ${tally.programs} programs in ${((Date.now() - t0) / 1000).toFixed(1)} s: ` +
        `${pct(o.syntax)} stopped by syntax errors, ${pct(o.errors)} checked with errors, ${pct(o.clean)} clean; ${tally.codes.size} codes`,
    );
    if (details.failed) {
      failures++;
      const shown = JSON.stringify(details.counterexample?.[0] ?? null);
      console.log(`     seed ${details.seed}, path ${details.counterexamplePath}: ${details.errorInstance instanceof Error ? details.errorInstance.message.split('\n')[0] : String(details.errorInstance)}`);
      console.log(`     counterexample (${shown.length} characters): ${shown.length > 2000 ? `${shown.slice(0, 2000)}...` : shown}`);
    }
  });
  const secs = (Date.now() - started) / 1000;
  console.log(`${total} programs in ${secs.toFixed(0)} s (${((1000 * secs) / Math.max(1, total)).toFixed(1)} ms each), ${codes.size} distinct codes; ${failures ? `${failures} properties FAILED` : 'no failures'}`);
  return failures ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
