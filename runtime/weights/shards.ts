// Sharded safetensors, as transformers' save_pretrained writes them: tensors are packed in order into
// files of at most `maxShardBytes` of data (a tensor is never split; one larger than the limit gets a
// file of its own), named model-00001-of-0000N.safetensors, with model.safetensors.index.json mapping
// each tensor to its file. One file is plain model.safetensors with no index.
import * as path from 'node:path';
import { writeFileSynced } from './atomic.js';
import { type StreamedTensor, writeSafetensorsFile } from './safetensors.js';

/** save_pretrained's default max_shard_size. */
export const DEFAULT_MAX_SHARD = '5GB';

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };

/** "5GB" (10^9), "500MiB" (2^20), "200KB", "1000000" (bytes) -> bytes, as transformers' convert_file_size_to_int; undefined if unreadable. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*$/i.exec(text);
  if (!m) return undefined;
  const bytes = Math.floor(Number(m[1]) * UNITS[(m[2] ?? 'B').toUpperCase()]!);
  return bytes > 0 ? bytes : undefined;
}

export const f32Bytes = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1) * 4;

/** Groups tensors, in order, into shards of at most `maxBytes` of data each. */
export function planShards<T extends { shape: number[] }>(tensors: readonly T[], maxBytes: number): T[][] {
  const shards: T[][] = [];
  let current: T[] = [], size = 0;
  for (const t of tensors) {
    const b = f32Bytes(t.shape);
    if (current.length && size + b > maxBytes) (shards.push(current), (current = []), (size = 0));
    current.push(t);
    size += b;
  }
  if (current.length) shards.push(current);
  return shards;
}

export function shardFileName(i: number, n: number): string {
  return n === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/** Writes `tensors` into `dir` as one file or as shards plus their index; returns the file names written and the data size. */
export function writeShardedSafetensors(dir: string, tensors: readonly StreamedTensor[], maxBytes: number, metadata: Record<string, string> = {}): { files: string[]; totalBytes: number } {
  const shards = planShards(tensors, maxBytes);
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let totalBytes = 0;
  shards.forEach((shard, i) => {
    const file = shardFileName(i, shards.length);
    totalBytes += writeSafetensorsFile(path.join(dir, file), shard, metadata);
    for (const t of shard) weightMap[t.name] = file;
    files.push(file);
  });
  if (shards.length > 1) {
    writeFileSynced(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2) + '\n');
    files.push('model.safetensors.index.json');
  }
  return { files, totalBytes };
}
