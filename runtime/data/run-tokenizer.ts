// The tokenizer of a run, chosen in one place: the tokenizer.json the first dataset names (a run has
// one tokenizer; the checker refuses two, PIPE4016), else the word vocabulary generated for the
// synthetic datasets. `json` is what the run folder keeps as RUN/tokenizer.json.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Graph } from '../../compiler/ir/graph.js';
import { syntheticTokenizer } from './datasets.js';
import { loadTokenizer } from './tokenizer.js';
import type { TextTokenizer } from './vocab-tokenizer.js';

/** The dataset's tokenizer.json the run uses, resolved against `baseDir`, or undefined for the generated vocabulary. */
export function namedTokenizerFile(g: Graph, baseDir: string): string | undefined {
  const named = g.datasets.map((d) => d.attrs['tokenizer']).find((t): t is string => typeof t === 'string' && t !== '');
  return named ? path.resolve(baseDir, named) : undefined;
}

/** The run's tokenizer, as `pipec run` chooses it: a dataset's tokenizer.json, else the generated word vocabulary. */
export function runTokenizer(g: Graph, baseDir: string): { tokenizer: TextTokenizer; json: string } {
  const file = namedTokenizerFile(g, baseDir);
  if (file) return { tokenizer: loadTokenizer(file), json: fs.readFileSync(file, 'utf8') };
  const llm = g.models[0]!.components.find((c) => c.role === 'llm');
  const vocab = syntheticTokenizer(g, Number(llm?.attrs['vocab'] ?? 32000));
  return { tokenizer: vocab, json: JSON.stringify(vocab.toTokenizerJson()) + '\n' };
}
