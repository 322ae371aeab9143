// "Did you mean ...?" — the closest candidate by edit distance, if it is close enough to be a likely typo.
import type { Diagnostic } from '../diagnostics/diagnostic.js';
import type { Range } from '../diagnostics/source.js';

/** Edit distance counting an adjacent transposition as one edit (optimal string alignment): "chta" -> "chat" is 1. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[(i - 1) * cols + j] + 1, d[i * cols + j - 1] + 1, d[(i - 1) * cols + j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[(i - 2) * cols + j - 2] + 1);
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1];
}

export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  const lower = name.toLowerCase();
  for (const c of candidates) {
    const d = c.toLowerCase() === lower ? 0.5 : editDistance(lower, c.toLowerCase());
    if (d < bestDist || (d === bestDist && best !== undefined && c < best)) {
      best = c;
      bestDist = d;
    }
  }
  const limit = Math.max(1, Math.floor(name.length / 3));
  return best !== undefined && bestDist <= limit ? best : undefined;
}

export function didYouMean(name: string, candidates: Iterable<string>, quote: (s: string) => string = (s) => `\`${s}\``): string | undefined {
  const c = closest(name, candidates);
  return c === undefined ? undefined : `did you mean ${quote(c)}?`;
}

/**
 * On a diagnostic about a misspelled `name`: the closest candidate as its "did you mean" hint and, where
 * the name's `range` is given, a quick fix that writes the candidate there. Returns the candidate.
 */
export function suggestName(d: Diagnostic, name: string, candidates: Iterable<string>, range?: Range): string | undefined {
  const near = closest(name, candidates);
  if (near) {
    d.hint = `did you mean \`${near}\`?`;
    if (range) d.fixes = [{ title: `Use \`${near}\``, range, newText: near }];
  }
  return near;
}
