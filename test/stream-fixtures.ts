// Fixtures for the streaming-data tests (data-stream, data-resume): a LLaVA dataset folder with PNGs of
// several sizes and aspect ratios, records of several lengths (some text-only, one bad), a word
// tokenizer, and a program over them (data-fixtures.ts's model: image 16, patch 8, 4 image tokens).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { program, type ProgramOptions } from './data-fixtures.js';
import { writePng } from './helpers/png.js';

export const WORDS = 'what colour ? red blue green a big small square on the left right top image first second';

/** A w x h PNG whose pixels vary (so resizing, cropping and padding all show). */
export function writeGradient(file: string, w: number, h: number, seed: number): void {
  const rgb: number[] = [];
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.push((x * 37 + seed * 11) % 256, (y * 53 + seed * 29) % 256, ((x + y) * 19 + seed * 7) % 256);
  writePng(file, { width: w, height: h, rgb });
}

const SIZES: [number, number][] = [[20, 24], [31, 12], [12, 40], [16, 16], [45, 30], [9, 27]];

/** Writes images/img{i}.png (SIZES, cycled) and returns their names. */
export function writeImages(dir: string, n = SIZES.length): string[] {
  return Array.from({ length: n }, (_, i) => {
    const [w, h] = SIZES[i % SIZES.length]!;
    writeGradient(path.join(dir, 'images', `img${i}.png`), w, h, i);
    return `img${i}.png`;
  });
}

/** `n` records: an image each (cycled), answers of 1-6 words, every `textEvery`-th text-only, one bad (a missing image) at `badAt`. */
export function records(n: number, images: string[], o: { prefix?: string; textEvery?: number; badAt?: number } = {}): unknown[] {
  const words = WORDS.split(' ').filter((w) => w !== '?');
  return Array.from({ length: n }, (_, i) => {
    const id = `${o.prefix ?? 'r'}${i}`;
    const answer = Array.from({ length: 1 + ((i * 7) % 6) }, (_, k) => words[(i + k * 3) % words.length]).join(' ');
    if (o.badAt === i) return { id, image: 'missing.png', conversations: [{ from: 'human', value: '<image>\nwhat colour ?' }, { from: 'gpt', value: answer }] };
    if (o.textEvery && i % o.textEvery === o.textEvery - 1) return { id, conversations: [{ from: 'human', value: 'what colour ?' }, { from: 'gpt', value: answer }] };
    return { id, image: images[i % images.length], conversations: [{ from: 'human', value: '<image>\nwhat colour ?' }, { from: 'gpt', value: answer }] };
  });
}

export function writeJson(file: string, data: unknown, pretty = true): void {
  fs.writeFileSync(file, JSON.stringify(data, null, pretty ? 2 : 0));
}

/** The data-fixtures program with extra stage fields (after `max_length`). */
export function streamProgram(o: ProgramOptions & { stageExtra?: string }): string {
  const text = program(o);
  return o.stageExtra ? text.replace(/(max_length: \d+)/g, `$1\n  ${o.stageExtra}`) : text;
}
