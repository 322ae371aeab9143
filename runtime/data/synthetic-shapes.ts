// `synthetic_shapes`: a deterministic dataset of coloured shapes with captions and questions in English
// and Japanese, generated in memory from a seed (no download). The same seed gives the same images and
// text on every machine. Records have the LLaVA shape (an image and turns), so they go through the same
// templates and batcher as a llava_json dataset.
//
// The drawings vary everything a shape's name does not depend on -- size, aspect, a small rotation,
// position, filled or outlined (and the line width), hard or anti-aliased edges, the background's grey
// level, tint, gradient and noise, the shade of the colour -- so that a model trained on them names the
// shapes and colours of images drawn by other programs too (test/e2e/quickstart.test.ts checks that).
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

export type Language = 'en' | 'ja';
export type QuestionKind = 'colour' | 'shape';

/**
 * The questions of the `qa` task; the first of each list is the one the held-out evaluation asks (and
 * the README shows). Both spellings of colour, since users type either.
 */
export const QUESTIONS: Record<Language, Record<QuestionKind, readonly string[]>> = {
  en: {
    colour: ['what colour is the shape ?', 'what color is the shape ?', 'what colour is it ?', 'what color is it ?'],
    shape: ['what shape is it ?', 'what shape is this ?', 'which shape is it ?'],
  },
  ja: {
    colour: ['この図形は何色ですか？', '何色ですか？'],
    shape: ['これは何の形ですか？', 'どんな形ですか？'],
  },
};

/** The answer to a question about a shape of colour `colour` and kind `shape`. */
export function answerFor(kind: QuestionKind, language: Language, colour: number, shape: number): string {
  return (kind === 'colour' ? COLOURS[colour]! : SHAPES[shape]!)[language];
}

/** What a worker thread needs to draw record `index` as generateShapes does (its drawing has its own stream). */
export interface ShapeDrawing {
  seed: number;
  index: number;
  size: number;
  colour: number;
  shape: number;
}

/** A drawing and the encoder's normalisation: the job the data workers run for a synthetic record. */
export interface DrawJob extends ShapeDrawing {
  mean: readonly number[];
  std: readonly number[];
}

export function drawRecord(d: ShapeDrawing): Uint8Array {
  return drawShape(Rng.derive(d.seed, `image${d.index}`), d.size, d.colour, d.shape);
}

/** RGB bytes (HWC) -> normalised CHW floats with the encoder's mean and std. */
export function normalisePixels(rgb: Uint8Array, size: number, mean: readonly number[], std: readonly number[]): Float32Array {
  const out = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < size * size; i++) out[c * size * size + i] = (rgb[i * 3 + c]! / 255 - mean[c]!) / std[c]!;
  return out;
}

/** A draw job's pixels, as the trainer's main thread would compute them from the record. */
export function drawJobPixels(j: DrawJob): Float32Array {
  return normalisePixels(drawRecord(j), j.size, j.mean, j.std);
}

export interface ShapeRecord {
  index: number;
  /** How its image is drawn (by drawRecord, on first read of rgb here, or in a data worker). */
  drawing: ShapeDrawing;
  language: Language;
  colour: number;
  shape: number;
  /** RGB interleaved, size x size (drawn on first read). */
  readonly rgb: Uint8Array;
  size: number;
  turns: { role: 'user' | 'assistant'; text: string }[];
  /** For evaluation: which question a qa record asks, and its answer. */
  question?: QuestionKind;
  answer: string;
}

type Point = [number, number];

/** A shape's outline as a polygon around (0, 0) with half-extent 1 (the circle is handled apart). */
function outline(shape: number, rng: Rng): Point[] {
  switch (shape) {
    case 1:
      return [[-1, -1], [1, -1], [1, 1], [-1, 1]];
    case 2: {
      // apex up; the base a little wider or narrower than equilateral
      const half = 0.95 + rng.next() * 0.2;
      return [[0, -1], [half, 0.8], [-half, 0.8]];
    }
    default: {
      const a = 0.24 + rng.next() * 0.14; // half the arm's width
      return [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]];
    }
  }
}

/** Signed distance from p to a closed polygon (negative inside; even-odd rule). */
function polygonDistance(poly: readonly Point[], x: number, y: number): number {
  let d = Infinity, inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [ax, ay] = poly[j]!, [bx, by] = poly[i]!;
    const ex = bx - ax, ey = by - ay;
    const t = Math.max(0, Math.min(1, ((x - ax) * ex + (y - ay) * ey) / (ex * ex + ey * ey)));
    d = Math.min(d, Math.hypot(x - ax - t * ex, y - ay - t * ey));
    if (ay > y !== by > y && x < ax + ((y - ay) * ex) / ey) inside = !inside;
  }
  return inside ? -d : d;
}

/** How one image is drawn, chosen from the record's generator. */
interface Style {
  cx: number;
  cy: number;
  /** Half-extents in pixels, before rotation. */
  rx: number;
  ry: number;
  cos: number;
  sin: number;
  /** 0: filled; else the outline's width in pixels. */
  line: number;
  /** Samples per pixel along each axis (1: hard edges). */
  supersample: number;
}

function chooseStyle(rng: Rng, size: number, shape: number): Style {
  const r = size * (0.17 + rng.next() * 0.25);
  // circles stay round; the others get a little stretch either way
  const stretch = shape === 0 ? 1 : 0.85 + rng.next() * 0.3;
  const rx = r * stretch, ry = r / stretch;
  const angle = ((rng.next() - 0.5) * 24 * Math.PI) / 180; // up to 12 degrees either way
  const ext = Math.hypot(rx, ry) * (shape === 0 ? 0.72 : 1); // stays inside the image whatever the rotation
  const span = (e: number) => Math.max(0, size - 2 * Math.min(e, size / 2 - 1));
  const cx = size / 2 - span(ext) / 2 + rng.next() * span(ext), cy = size / 2 - span(ext) / 2 + rng.next() * span(ext);
  const line = rng.next() < 0.35 ? 1 + rng.next() * Math.max(0.5, r * 0.3) : 0;
  const supersample = [1, 2, 3][rng.int(3)]!;
  return { cx, cy, rx, ry, cos: Math.cos(angle), sin: Math.sin(angle), line, supersample };
}

/** Signed distance in pixels (about; exact for circles) from (x, y) to the shape's edge, negative inside. */
function distance(shape: number, poly: readonly Point[], s: Style, x: number, y: number): number {
  const px = x - s.cx, py = y - s.cy;
  // into the shape's frame: unrotate, then unit half-extents; distances are rescaled to pixels
  const ux = (px * s.cos + py * s.sin) / s.rx, uy = (-px * s.sin + py * s.cos) / s.ry;
  return (shape === 0 ? Math.hypot(ux, uy) - 1 : polygonDistance(poly, ux, uy)) * Math.min(s.rx, s.ry);
}

/** Coverage of pixel (x, y) by the shape (its area or its outline's band), 0..1. */
function coverage(shape: number, poly: readonly Point[], s: Style, x: number, y: number): number {
  const on = (d: number) => (s.line ? Math.abs(d + s.line / 2) <= s.line / 2 : d <= 0);
  const centre = distance(shape, poly, s, x + 0.5, y + 0.5);
  // a pixel farther than its diagonal from every edge is wholly in or out: no need to supersample
  const far = s.line ? Math.abs(centre + s.line / 2) - s.line / 2 : Math.abs(centre);
  const n = s.supersample;
  if (n === 1 || far > 0.75) return on(centre) ? 1 : 0;
  let hit = 0;
  for (let sy = 0; sy < n; sy++) for (let sx = 0; sx < n; sx++) if (on(distance(shape, poly, s, x + (sx + 0.5) / n, y + (sy + 0.5) / n))) hit++;
  return hit / (n * n);
}

/** One drawing of a `COLOURS[colour]` `SHAPES[shape]` on a size x size canvas. */
export function drawShape(rng: Rng, size: number, colour: number, shape: number): Uint8Array {
  const img = new Uint8Array(size * size * 3);
  // background: a grey from black to light, slightly tinted, with a gradient and noise
  const grey = rng.next() < 0.5 ? rng.next() * 70 : rng.next() * 170;
  const tint = [0, 1, 2].map(() => (rng.next() - 0.5) * 24);
  const gx = (rng.next() - 0.5) * 50 / size, gy = (rng.next() - 0.5) * 50 / size;
  const noise = rng.next() < 0.3 ? 2 : 4 + rng.next() * 36;
  // the colour: a shade around the named one
  const shade = 0.82 + rng.next() * 0.26;
  const fg = COLOURS[colour]!.rgb.map((c) => c * shade + (rng.next() - 0.5) * 40);
  const poly = outline(shape, rng);
  const s = chooseStyle(rng, size, shape);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const o = (y * size + x) * 3;
      const a = coverage(shape, poly, s, x, y);
      const bg = grey + gx * (x - size / 2) + gy * (y - size / 2);
      const n = (rng.next() - 0.5) * noise;
      for (let c = 0; c < 3; c++) {
        const v = a * fg[c]! + (1 - a) * (bg + tint[c]!) + n + (rng.next() - 0.5) * noise * 0.3;
        img[o + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
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
    const language: Language = o.languages === 'en+ja' ? (rng.int(2) ? 'ja' : 'en') : o.languages;
    const c = COLOURS[colour]!, s = SHAPES[shape]!;
    let turns: ShapeRecord['turns'];
    let question: ShapeRecord['question'];
    let answer: string;
    if (o.task === 'caption') {
      answer = language === 'en' ? `a ${c.en} ${s.en}` : `${c.ja}の${s.ja}`;
      turns = [{ role: 'user', text: '<image>' }, { role: 'assistant', text: answer }];
    } else {
      question = rng.int(2) ? 'shape' : 'colour';
      const asked = QUESTIONS[language][question];
      answer = answerFor(question, language, colour, shape);
      turns = [{ role: 'user', text: `<image>\n${asked[rng.int(asked.length)]!}` }, { role: 'assistant', text: answer }];
    }
    // The drawing has its own stream, so the text of a record does not depend on how it is drawn; it
    // is drawn when first read (building the vocabulary reads only the text).
    let rgb: Uint8Array | undefined;
    const drawing: ShapeDrawing = { seed: o.seed, index: i, size: o.image, colour, shape };
    const draw = () => (rgb ??= drawRecord(drawing));
    out.push({ index: i, drawing, language, colour, shape, get rgb() { return draw(); }, size: o.image, turns, question, answer });
  }
  return out;
}
