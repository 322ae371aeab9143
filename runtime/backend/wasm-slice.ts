// Slice, SplitV and Unpack for tfjs-backend-wasm, copying from a view of the wasm heap. Stock tfjs-wasm 4.22
// slices in JavaScript after `readSync`, which copies the WHOLE input out of the heap for every slice: a
// SplitV into two halves of [64, 24, 32] copies the input twice to take each half once, and Unpack along
// an axis of n copies it n times. Here the input is read in place (a typed-array view of the heap) and only
// the slice is copied, as runs of contiguous elements. Numerically a copy: the same bits.
import * as tf from '@tensorflow/tfjs-core';
import { replaceKernel } from './replace-kernel.js';

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/** Below this many elements a run is copied element by element (a subarray costs more than the loop). */
const SHORT_RUN = 32;

/**
 * out = x[begin : begin + size] for x of `shape` (row-major). The trailing dimensions taken whole and the
 * last one taken in part make one contiguous run per index of the dimensions before them.
 */
export function copySlice(x: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> }, shape: readonly number[], begin: readonly number[], size: readonly number[], out: { set(a: ArrayLike<number>, at: number): void; [i: number]: number }): void {
  const rank = shape.length;
  let inner = 1;
  let d = rank - 1;
  while (d >= 0 && begin[d] === 0 && size[d] === shape[d]) inner *= shape[d--]!;
  if (d < 0) {
    out.set(x.subarray(0, inner), 0);
    return;
  }
  const run = size[d]! * inner;
  // strides of the dimensions before d, in elements
  const strides = new Array<number>(d);
  let s = inner * shape[d]!;
  for (let k = d - 1; k >= 0; k--) {
    strides[k] = s;
    s *= shape[k]!;
  }
  let outer = 1;
  for (let k = 0; k < d; k++) outer *= size[k]!;
  const idx = new Array<number>(d).fill(0);
  let src = begin[d]! * inner;
  for (let k = 0; k < d; k++) src += begin[k]! * strides[k]!;
  let dst = 0;
  for (let n = 0; n < outer; n++) {
    if (run < SHORT_RUN) for (let i = 0; i < run; i++) out[dst + i] = x[src + i]!;
    else out.set(x.subarray(src, src + run), dst);
    dst += run;
    // next index of the outer dimensions (the last one fastest), moving src along
    for (let k = d - 1; k >= 0; k--) {
      src += strides[k]!;
      if (++idx[k]! < size[k]!) break;
      src -= strides[k]! * size[k]!;
      idx[k] = 0;
    }
  }
}

/** A slice of x as a new tensor of `outShape` (the slice's own shape, or Unpack's with the axis dropped). */
function sliceOnHeap(backend: WasmBackendLike, x: tf.TensorInfo, begin: number[], size: number[], outShape: number[]): tf.TensorInfo {
  const out = backend.makeOutput(outShape, x.dtype);
  if (size.some((n) => n === 0)) return out;
  // views taken after makeOutput: growing the heap there detaches views taken before
  copySlice(backend.typedArrayFromHeap(x) as Float32Array, x.shape, begin, size, backend.typedArrayFromHeap(out) as Float32Array);
  return out;
}

export function registerWasmSlices(): void {
  replaceKernel('Slice', 'wasm', (slice) => (args) => {
    const x = (args.inputs as { x: tf.TensorInfo }).x;
    if (x.dtype === 'string') return slice.kernelFunc(args);
    const attrs = args.attrs as unknown as { begin: number | number[]; size?: number | number[] };
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin, attrs.size);
    return sliceOnHeap(args.backend as unknown as WasmBackendLike, x, begin, size, size);
  });
  replaceKernel('SplitV', 'wasm', (splitV) => (args) => {
    const x = (args.inputs as { x: tf.TensorInfo }).x;
    if (x.dtype === 'string') return splitV.kernelFunc(args);
    const attrs = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number | number[] };
    const axis = tf.util.parseAxisParam(attrs.axis, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs.numOrSizeSplits, axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((n) => {
      const size = x.shape.slice();
      size[axis] = n;
      const out = sliceOnHeap(args.backend as unknown as WasmBackendLike, x, begin, size, size);
      begin[axis]! += n;
      return out;
    });
  });
  replaceKernel('Unpack', 'wasm', (unpack) => (args) => {
    const x = (args.inputs as { value: tf.TensorInfo }).value;
    if (x.dtype === 'string') return unpack.kernelFunc(args);
    let axis = (args.attrs as unknown as { axis: number }).axis;
    if (axis < 0) axis += x.shape.length;
    const outShape = x.shape.filter((_, i) => i !== axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    const size = x.shape.slice();
    size[axis] = 1;
    return Array.from({ length: x.shape[axis]! }, (_, i) => {
      begin[axis] = i;
      return sliceOnHeap(args.backend as unknown as WasmBackendLike, x, begin, size, outShape);
    });
  });
}
