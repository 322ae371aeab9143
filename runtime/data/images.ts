// Image decoding and the vision encoders' preprocessing, written to match what Hugging Face's image
// processors (which use PIL) give for the same file, so weights trained in Python see the same inputs:
//   CLIPImageProcessor:   resize (shorter side -> size, bicubic) -> center crop -> /255 -> (x-mean)/std
//   SiglipImageProcessor: resize (both sides -> size, bicubic)   -> /255 -> (x-mean)/std
//   LLaVA-1.5's `pad` (image_aspect_ratio "pad"): first expand2square -- the image pasted in the middle of a
//   square of the processor's mean colour as integer RGB (int(mean * 255), truncated) -- then one of the above
// Files are recognised by their first bytes, not their extension: datasets often hold JPEGs named .png.
import * as fs from 'node:fs';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';

/** 8-bit RGB, interleaved, row-major: pixel (x, y) channel c is data[(y * width + x) * 3 + c]. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type ImageKind = 'png' | 'jpeg';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** What the first bytes say the file is; undefined for anything but PNG or JPEG. */
export function sniffImage(bytes: Uint8Array): ImageKind | undefined {
  if (bytes.length >= 8 && PNG_MAGIC.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

/** Decodes PNG or JPEG bytes to RGB. Throws a plain Error saying why (callers wrap it as PIPE9005). */
export function decodeImage(bytes: Uint8Array): RgbImage {
  const kind = sniffImage(bytes);
  if (!kind) {
    const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`not a PNG or JPEG file (it starts with bytes ${head || '(empty file)'})`);
  }
  let width: number, height: number, src: Uint8Array, channels: number;
  try {
    if (kind === 'png') {
      // pngjs always returns 8-bit RGBA: palette, grey and grey+alpha are expanded and 16-bit samples are
      // rescaled to 8 bits. (One difference from PIL: pixels matching a tRNS colour key come back as
      // 0,0,0,0, so their colour is lost; such files are rare in training data.)
      const png = pngjs.PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
      ({ width, height } = png);
      src = png.data;
      channels = 4;
    } else {
      // formatAsRGBA: false gives 3 channels, with greyscale JPEGs already expanded to R = G = B. The
      // limits keep a hostile file from asking for gigabytes.
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxResolutionInMP: 200, maxMemoryUsageInMB: 1024 });
      ({ width, height } = img);
      src = img.data;
      channels = 3;
    }
  } catch (e) {
    throw new Error(`${kind === 'png' ? 'PNG' : 'JPEG'} decoding failed: ${(e as Error).message ?? String(e)}`);
  }
  if (!(width > 0 && height > 0) || src.length < width * height * channels)
    throw new Error(`${kind === 'png' ? 'PNG' : 'JPEG'} decoding gave no pixels (${width}x${height})`);
  if (channels === 3) return { width, height, data: new Uint8Array(src.buffer, src.byteOffset, width * height * 3) };
  // RGBA -> RGB by dropping alpha, as PIL's Image.convert("RGB") does (no compositing over a background),
  // which is what the Hugging Face processors call.
  const data = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; q < data.length; p += 4, q += 3) {
    data[q] = src[p]!;
    data[q + 1] = src[p + 1]!;
    data[q + 2] = src[p + 2]!;
  }
  return { width, height, data };
}

/**
 * Reads and decodes an image file the user named (`pipec generate --image`); throws a plain Error with
 * the reason when it can't. Images a data file names are read through confine.ts instead.
 */
export function loadImageFile(path: string): RgbImage {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(err.code === 'ENOENT' ? 'the file does not exist' : `cannot read the file: ${err.message}`);
  }
  return decodeImage(bytes);
}

// ---- resizing ----
// PIL's resampling algorithm (Imaging/Resample.c), so results agree with the HF processors to within
// rounding (PIL uses fixed-point weights; we use doubles). For each output pixel i along an axis:
//   centre = (i + 0.5) * scale                   (half-pixel centres, scale = in / out)
//   weights w_j = K((j + 0.5 - centre) / st)     for input pixels j within the kernel's support * st
// where st = max(scale, 1): when shrinking, the kernel is stretched so that every input pixel
// contributes (antialiasing). Near the edges the window is cut to the image and the weights are
// renormalised to sum to 1 (PIL's way; not edge-pixel replication). Width is resampled first, then
// height, rounding to 8 bits in between, as PIL does for 8-bit images.

export type ResizeFilter = 'bilinear' | 'bicubic';

const KERNELS: Record<ResizeFilter, { support: number; k: (x: number) => number }> = {
  // Triangle: linear interpolation between the two nearest pixel centres.
  bilinear: { support: 1, k: (x) => Math.max(0, 1 - Math.abs(x)) },
  // Keys' cubic convolution with a = -0.5 (PIL's choice; PyTorch uses -0.75, so differs slightly).
  bicubic: {
    support: 2,
    k: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};

/** For each output index: the first input index and the normalised weights of the window from there. */
function axisWeights(inSize: number, outSize: number, filter: ResizeFilter): { start: number; w: number[] }[] {
  const { support, k } = KERNELS[filter];
  const scale = inSize / outSize;
  const st = Math.max(scale, 1);
  const reach = support * st;
  const out: { start: number; w: number[] }[] = [];
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(centre - reach + 0.5));
    const hi = Math.min(inSize, Math.trunc(centre + reach + 0.5));
    const w: number[] = [];
    let sum = 0;
    for (let j = lo; j < hi; j++) {
      const v = k((j + 0.5 - centre) / st);
      w.push(v);
      sum += v;
    }
    out.push({ start: lo, w: sum === 0 ? w : w.map((v) => v / sum) });
  }
  return out;
}

const clampByte = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** Per output index: the window's first input index, and its weights flattened at a fixed stride (zero-padded). */
function packedWeights(inSize: number, outSize: number, filter: ResizeFilter): { start: Int32Array; taps: number; w: Float64Array } {
  const ws = axisWeights(inSize, outSize, filter);
  const taps = Math.max(1, ...ws.map((x) => x.w.length));
  const start = new Int32Array(outSize), w = new Float64Array(outSize * taps);
  ws.forEach((x, i) => {
    start[i] = x.start;
    w.set(x.w, i * taps);
  });
  return { start, taps, w };
}

/**
 * Resizes an RGB image to outW x outH. An axis whose size does not change is copied, not resampled.
 * Each output channel is the weighted sum of its window in window order, the three channels side by
 * side (a zero weight past a short window adds nothing, so the sums are exactly the per-channel ones).
 */
export function resizeRgb(img: RgbImage, outW: number, outH: number, filter: ResizeFilter): RgbImage {
  if (!(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0)) throw new Error(`cannot resize to ${outW}x${outH}`);
  let cur = img;
  if (outW !== cur.width) {
    const { start, taps, w } = packedWeights(cur.width, outW, filter);
    const src = cur.data, inW = cur.width;
    const data = new Uint8Array(outW * cur.height * 3);
    for (let y = 0; y < cur.height; y++)
      for (let x = 0; x < outW; x++) {
        let s0 = 0, s1 = 0, s2 = 0;
        let p = (y * inW + start[x]!) * 3;
        const lim = Math.min(taps, inW - start[x]!);
        for (let t = 0, k = x * taps; t < lim; t++, k++, p += 3) {
          const wt = w[k]!;
          s0 += wt * src[p]!;
          s1 += wt * src[p + 1]!;
          s2 += wt * src[p + 2]!;
        }
        const o = (y * outW + x) * 3;
        data[o] = clampByte(s0);
        data[o + 1] = clampByte(s1);
        data[o + 2] = clampByte(s2);
      }
    cur = { width: outW, height: cur.height, data };
  }
  if (outH !== cur.height) {
    const { start, taps, w } = packedWeights(cur.height, outH, filter);
    const src = cur.data, width = cur.width, row = width * 3, inH = cur.height;
    const data = new Uint8Array(width * outH * 3);
    const acc = new Float64Array(row);
    for (let y = 0; y < outH; y++) {
      acc.fill(0);
      const lim = Math.min(taps, inH - start[y]!);
      for (let t = 0; t < lim; t++) {
        const wt = w[y * taps + t]!;
        const base = (start[y]! + t) * row;
        for (let q = 0; q < row; q++) acc[q] += wt * src[base + q]!;
      }
      const o = y * row;
      for (let q = 0; q < row; q++) data[o + q] = clampByte(acc[q]!);
    }
    cur = { width, height: outH, data };
  }
  return cur;
}

// ---- preprocessing ----

export interface PreprocessOptions {
  size: number;
  mean: number[];
  std: number[];
  /** 'shortest_edge_center_crop': CLIP's processor. 'squash': SigLIP's (aspect ratio not kept). */
  mode: 'shortest_edge_center_crop' | 'squash';
  /** LLaVA-1.5's `pad`: expand to a square of the mean colour before `mode` (so nothing is cropped or squashed). */
  pad?: boolean;
}

/**
 * LLaVA's expand2square: a non-square image pasted into a square of `background`, centred along its
 * shorter side with the offset rounded down ((long - short) // 2), as PIL's paste in LLaVA's code does.
 */
export function expandToSquare(img: RgbImage, background: readonly [number, number, number]): RgbImage {
  const { width: w, height: h } = img;
  if (w === h) return img;
  const side = Math.max(w, h);
  const data = new Uint8Array(side * side * 3);
  for (let p = 0; p < side * side; p++) data.set(background, p * 3);
  const x0 = w < h ? Math.floor((h - w) / 2) : 0, y0 = h < w ? Math.floor((w - h) / 2) : 0;
  for (let y = 0; y < h; y++) data.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), ((y0 + y) * side + x0) * 3);
  return { width: side, height: side, data };
}

/** The pad colour LLaVA uses: the processor's mean as integer RGB, `tuple(int(x * 255) for x in image_mean)`. */
export function padColour(mean: readonly number[]): [number, number, number] {
  return [Math.trunc(mean[0]! * 255), Math.trunc(mean[1]! * 255), Math.trunc(mean[2]! * 255)];
}

/** Returns float32 CHW [3, size, size]: (pixel / 255 - mean[c]) / std[c]. */
export function preprocessImage(rgb: RgbImage, opts: PreprocessOptions): Float32Array {
  const { size, mean, std, mode } = opts;
  if (!(Number.isInteger(size) && size > 0)) throw new Error(`image size must be a positive integer, got ${size}`);
  if (mean.length !== 3 || std.length !== 3 || std.some((s) => s === 0))
    throw new Error(`image_mean and image_std need 3 values each (std non-zero), got [${mean}] and [${std}]`);
  if (rgb.data.length !== rgb.width * rgb.height * 3) throw new Error(`image data holds ${rgb.data.length} bytes, expected ${rgb.width}x${rgb.height}x3`);

  if (opts.pad) rgb = expandToSquare(rgb, padColour(mean));
  let img: RgbImage;
  let left = 0, top = 0;
  if (mode === 'squash') {
    // SiglipImageProcessor resizes straight to size x size with resample=BICUBIC (its default).
    img = resizeRgb(rgb, size, size, 'bicubic');
  } else {
    // CLIPImageProcessor: shorter side -> size, longer side -> int(size * long / short) (truncated, as
    // HF's get_resize_output_image_size does), bicubic; then crop the middle, offsets rounded down.
    const { width: w, height: h } = rgb;
    const [outW, outH] = w <= h ? [size, Math.floor((size * h) / w)] : [Math.floor((size * w) / h), size];
    img = resizeRgb(rgb, outW, outH, 'bicubic');
    left = Math.floor((outW - size) / 2);
    top = Math.floor((outH - size) / 2);
  }
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const o = ((top + y) * img.width + left + x) * 3;
      for (let c = 0; c < 3; c++) out[c * plane + y * size + x] = (img.data[o + c]! / 255 - mean[c]!) / std[c]!;
    }
  return out;
}
