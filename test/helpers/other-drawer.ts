// Coloured shapes drawn by code that shares nothing with pipec's generator (runtime/data/synthetic-shapes.ts),
// to test that a model trained on the generator's images names the shapes and colours of other drawings:
// a scanline polygon filler with exact horizontal coverage and 4 sub-rows per pixel (anti-aliased), on
// larger canvases (48-96 px, which the encoder's preprocessing resizes), regular polygons (an equilateral
// triangle, a square, a plus with arms a third of its width, a 72-gon for the circle), outlines as the
// shape minus its inset, another palette, mid-grey backgrounds with Gaussian noise, its own random numbers.

/** Another program's idea of the six colours, in the generator's order (red, green, blue, yellow, purple, white). */
export const OTHER_PALETTE: readonly (readonly [number, number, number])[] = [
  [230, 25, 75], [60, 180, 75], [67, 99, 216], [255, 225, 25], [145, 30, 180], [255, 255, 255],
];

export interface OtherDrawing {
  width: number;
  height: number;
  /** RGB interleaved, row by row. */
  rgb: Uint8Array;
  /** Indices into the generator's COLOURS and SHAPES. */
  colour: number;
  shape: number;
}

/** xorshift32: not the generator's mulberry32. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

type Pt = [number, number];

/** The shape's polygon centred at (cx, cy) with half-extent e, inset by w (0: the shape itself). */
function polygon(shape: number, cx: number, cy: number, e: number, w: number): Pt[] {
  if (shape === 0) return Array.from({ length: 72 }, (_, k) => [cx + (e - w) * Math.cos((k * Math.PI) / 36), cy + (e - w) * Math.sin((k * Math.PI) / 36)]);
  if (shape === 1) {
    const h = e - w;
    return [[cx - h, cy - h], [cx + h, cy - h], [cx + h, cy + h], [cx - h, cy + h]];
  }
  if (shape === 2) {
    // equilateral, apex up, circumradius e; its centroid is its incentre, so scaling it insets evenly
    const R = e - 2 * w; // inradius is half the circumradius
    return [0, 1, 2].map((k) => [cx + R * Math.sin((k * 2 * Math.PI) / 3), cy - R * Math.cos((k * 2 * Math.PI) / 3)] as Pt);
  }
  const a = e / 3 - w, b = e - w; // a plus: arms a third of the width
  const q: Pt[] = [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]];
  return q.map(([x, y]) => [cx + x, cy + y]);
}

/** Coverage (0..1) of every pixel of a W x H canvas by a polygon: 4 sub-rows, exact spans along x. */
function fill(poly: readonly Pt[], W: number, H: number): Float32Array {
  const cover = new Float32Array(W * H);
  const SUB = 4;
  for (let row = 0; row < H * SUB; row++) {
    const y = (row + 0.5) / SUB;
    const xs: number[] = [];
    for (let i = 0; i < poly.length; i++) {
      const [x0, y0] = poly[i]!, [x1, y1] = poly[(i + 1) % poly.length]!;
      if ((y0 <= y && y1 > y) || (y1 <= y && y0 > y)) xs.push(x0 + ((y - y0) / (y1 - y0)) * (x1 - x0));
    }
    xs.sort((p, q) => p - q);
    const py = Math.floor(row / SUB);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      const from = Math.max(0, xs[k]!), to = Math.min(W, xs[k + 1]!);
      for (let px = Math.floor(from); px < Math.ceil(to); px++) {
        const part = Math.min(to, px + 1) - Math.max(from, px);
        if (part > 0) cover[py * W + px]! += part / SUB;
      }
    }
  }
  return cover;
}

/** `count` drawings, shapes and colours in turn (each shape with each colour as count allows). */
export function drawOtherShapes(count: number, seed: number): OtherDrawing[] {
  const rand = xorshift(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const out: OtherDrawing[] = [];
  for (let i = 0; i < count; i++) {
    const shape = i % 4, colour = Math.floor(i / 4) % 6;
    const W = [48, 64, 96][i % 3]!, H = W;
    const e = W * (0.2 + rand() * 0.2); // half-extent
    const cx = e + 1 + rand() * (W - 2 * e - 2), cy = e + 1 + rand() * (H - 2 * e - 2);
    const outlined = i % 5 === 4;
    const stroke = outlined ? (W / 32) * (1.5 + rand() * 1.5) : 0; // 1.5-3 px once resized to 32
    const cover = fill(polygon(shape, cx, cy, e, 0), W, H);
    if (outlined) {
      const hole = fill(polygon(shape, cx, cy, e, stroke), W, H);
      for (let k = 0; k < cover.length; k++) cover[k] = Math.max(0, cover[k]! - hole[k]!);
    }
    const grey = 70 + rand() * 90, sigma = 6 + rand() * 14;
    const ink = OTHER_PALETTE[colour]!;
    const rgb = new Uint8Array(W * H * 3);
    for (let p = 0; p < W * H; p++) {
      const n = gauss() * sigma;
      for (let c = 0; c < 3; c++) rgb[p * 3 + c] = Math.max(0, Math.min(255, Math.round(cover[p]! * ink[c]! + (1 - cover[p]!) * (grey + n))));
    }
    out.push({ width: W, height: H, rgb, colour, shape });
  }
  return out;
}
