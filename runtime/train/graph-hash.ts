// A program's identity for checkpoints and run folders: the SHA-256 of its graph without `source`
// (moving or renaming the .pipe file keeps the identity; changing any field of the program does not).
import { createHash } from 'node:crypto';
import type { Graph } from '../../compiler/ir/graph.js';

export function graphHash(g: Graph): string {
  const { source: _source, ...rest } = g;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 16);
}
