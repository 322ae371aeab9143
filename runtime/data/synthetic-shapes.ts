// `synthetic_shapes`: a deterministic dataset of coloured shapes on a noisy background, with captions and
// questions in English and Japanese, generated in memory from a seed (no download). The same seed gives
// the same images and text on every machine. Records have the LLaVA shape (an image and turns), so they
// go through the same templates and batcher as a llava_json dataset.
import { Rng } from '../random.js';

export const COLOURS = [
  { en: 'red', ja: '赤', rgb: [220, 40, 40] },
  { en: 'green', ja: '緑', rgb: [40, 190, 60] },
  { en: 'blue', ja: '青', rgb: [50, 80, 230] },
  { en: 'yellow', ja: '黄色', rgb: [235, 220, 40] },
  { en: 'purple', ja: '紫', rgb: [150, 50, 200] },
  { en: 'white', ja: '白', rgb: [240, 240, 240] },
] as const;

export const SHAPES = [
  { en: 'circle', ja: '丸' },
  { en: 'square', ja: '四角' },
  { en: 'triangle', ja: '三角' },
  { en: 'cross', ja: '十字' },
] as const;

export interface ShapeRecord {
  index: number;
  language: 'en' | 'ja';
  colour: number;
  shape: number;
  /** RGB interleaved, size x size. */
  rgb: Uint8Array;
  size: number;
  turns: { role: 'user' | 'assistant'; text: string }[];
  /** For evaluation: which question a qa record asks, and its answer. */
  question?: 'colour' | 'shape';
  answer: string;
}

function inside(shape: number, x: number, y: number, cx: number, cy: number, r: number): boolean {
  const dx = x - cx, dy = y - cy;
  switch (shape) {
    case 0: return dx * dx + dy * dy <= r * r;
    case 1: return Math.abs(dx) <= r * 0.85 && Math.abs(dy) <= r * 0.85;
    case 2: return dy <= r * 0.8 && dy >= -r && Math.abs(dx) <= ((dy + r) / 1.8) * 1.15;
    default: return (Math.abs(dx) <= r * 0.3 && Math.abs(dy) <= r) || (Math.abs(dy) <= r * 0.3 && Math.abs(dx) <= r);
  }
}

export function drawShape(rng: Rng, size: number, colour: number, shape: number): Uint8Array {
  const img = new Uint8Array(size * size * 3);
  const bg = 20 + rng.int(40);
  const r = size * (0.22 + rng.next() * 0.18);
  const cx = r + rng.next() * (size - 2 * r), cy = r + rng.next() * (size - 2 * r);
  const base = COLOURS[colour]!.rgb;
  const jitter = base.map((c) => Math.max(0, Math.min(255, c + rng.int(31) - 15)));
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const o = (y * size + x) * 3;
      const on = inside(shape, x + 0.5, y + 0.5, cx, cy, r);
      for (let c = 0; c < 3; c++) img[o + c] = on ? jitter[c]! : bg + rng.int(16);
    }
  return img;
}

export interface SyntheticOptions {
  count: number;
  image: number;
  seed: number;
  languages: 'en' | 'ja' | 'en+ja';
  task: 'caption' | 'qa';
}

export function generateShapes(o: SyntheticOptions): ShapeRecord[] {
  const out: ShapeRecord[] = [];
  for (let i = 0; i < o.count; i++) {
    const rng = Rng.derive(o.seed, `shape${i}`);
    const colour = rng.int(COLOURS.length), shape = rng.int(SHAPES.length);
    const language = o.languages === 'en+ja' ? (rng.int(2) ? 'ja' : 'en') : o.languages;
    const rgb = drawShape(rng, o.image, colour, shape);
    const c = COLOURS[colour]!, s = SHAPES[shape]!;
    let turns: ShapeRecord['turns'];
    let question: ShapeRecord['question'];
    let answer: string;
    if (o.task === 'caption') {
      answer = language === 'en' ? `a ${c.en} ${s.en}` : `${c.ja}の${s.ja}`;
      turns = [{ role: 'user', text: '<image>' }, { role: 'assistant', text: answer }];
    } else {
      question = rng.int(3) ? 'colour' : 'shape'; // colour twice as often: it is the evaluated question
      const q = language === 'en'
        ? (question === 'colour' ? 'what colour is the shape ?' : 'what shape is it ?')
        : (question === 'colour' ? 'この図形は何色ですか？' : 'これは何の形ですか？');
      answer = language === 'en' ? (question === 'colour' ? c.en : s.en) : (question === 'colour' ? c.ja : s.ja);
      turns = [{ role: 'user', text: `<image>\n${q}` }, { role: 'assistant', text: answer }];
    }
    out.push({ index: i, language, colour, shape, rgb, size: o.image, turns, question, answer });
  }
  return out;
}
