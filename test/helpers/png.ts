// The one writer of PNG fixtures for tests (pngjs). Pixels are given row by row, RGB or RGBA; RGB gets
// an opaque alpha. `options` are pngjs's (e.g. { colorType: 0 } for greyscale).
import * as fs from 'node:fs';
import * as path from 'node:path';
import pngjs from 'pngjs';

export type Pixels = { width: number; height: number } & ({ rgb: ArrayLike<number> } | { rgba: ArrayLike<number> });

export function pngBytes(p: Pixels, options?: pngjs.PackerOptions): Buffer {
  const n = p.width * p.height;
  const data = Buffer.alloc(n * 4);
  if ('rgba' in p) {
    if (p.rgba.length !== n * 4) throw new Error(`pngBytes: ${p.rgba.length} RGBA values for ${p.width}x${p.height}`);
    data.set(Array.from(p.rgba));
  } else {
    if (p.rgb.length !== n * 3) throw new Error(`pngBytes: ${p.rgb.length} RGB values for ${p.width}x${p.height}`);
    for (let i = 0; i < n; i++) data.set([p.rgb[i * 3]!, p.rgb[i * 3 + 1]!, p.rgb[i * 3 + 2]!, 255], i * 4);
  }
  return pngjs.PNG.sync.write({ width: p.width, height: p.height, data } as pngjs.PNG, options);
}

export function writePng(file: string, p: Pixels, options?: pngjs.PackerOptions): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, pngBytes(p, options));
}

/** A width x height image of one colour. */
export function solid(width: number, height: number, rgb: readonly [number, number, number]): Pixels {
  return { width, height, rgb: Array.from({ length: width * height }, () => rgb).flat() };
}
