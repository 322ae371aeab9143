// A program's identity for checkpoints and run folders: the SHA-256 of its graph without `source`
// (moving or renaming the .pipe file keeps the identity; changing any field of the program does not).
// Custom components' code hashes and file lists are left out too: what code may run is trust's
// business (runtime/trust.ts), and editing a modeling file must not orphan a run or prepared shards.
import { createHash } from 'node:crypto';
import type { Graph } from '../../compiler/ir/graph.js';

export function graphHash(g: Graph): string {
  const { source: _source, ...rest } = g;
  const text = JSON.stringify(rest, (key, value: unknown) => {
    if (key !== 'custom' || !value || typeof value !== 'object') return value;
    const { files: _f, hash: _h, python, ...kept } = value as Record<string, unknown>;
    if (python && typeof python === 'object') {
      const { files: _pf, hash: _ph, ...pyKept } = python as Record<string, unknown>;
      return { ...kept, python: pyKept };
    }
    return kept;
  });
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
