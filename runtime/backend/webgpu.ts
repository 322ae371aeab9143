// WebGPU through Dawn: the `webgpu` npm package (prebuilt dawn.node, linux-x64 included) and
// @tensorflow/tfjs-backend-webgpu. What it takes in Node:
//  1. Order. Dawn's globals (GPUBufferUsage, GPUMapMode, ...) go onto globalThis and
//     `navigator.gpu` is set (Node 20 has no navigator) before @tensorflow/tfjs-backend-webgpu is
//     imported; it registers itself only when navigator.gpu exists at import time.
//  2. The adapter is ours. Dawn's routes (Vulkan, then OpenGL ES on EGL surfaceless, which needs
//     featureLevel 'compatibility') are probed in a child process (see probeWebgpu), which reports
//     vendor / architecture / software; on activation we register a factory that creates the device on
//     that adapter, with the adapter's storage-buffer limit (compatibility mode otherwise caps it at 4
//     per shader stage). tfjs's own factory would make `tf.setBackend` return false, not throw, when
//     it finds no adapter.
//  3. Synchronous reads. tfjs-backend-webgpu's readSync (dataSync) goes through OffscreenCanvas, which
//     Node lacks, and the runtime reads losses, router choices and pixels synchronously. Dawn delivers
//     map callbacks from wgpuInstanceProcessEvents, which dawn.node schedules with the global
//     setImmediate; we record that scheduled function and call it in a loop until the staging buffer
//     is mapped (the GPU works on its own threads).
//  4. Errors. WebGPU reports a rejected kernel asynchronously and its output reads as zeros; the device's
//     uncaptured errors are thrown by the next read. AddN past the storage-buffer limit is replaced
//     (webgpu-extras.ts).
//  5. Event-loop turns. Each dispatch's bind group is freed by an N-API finaliser, which Node runs only
//     on an event-loop turn; the trainer yields once per step (see the note before the factory).
//  6. Exit. A live Dawn instance / device can keep the process up; releaseWebgpu() drops them and the
//     CLI calls it at the end of each command.
// PIPEC_WEBGPU_ADAPTER=none makes the probe find no adapter (tests of the fallback); PIPEC_WEBGPU_BACKEND
// picks Dawn's backend (vulkan, opengles, ...) instead of trying Vulkan then OpenGL ES.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { firstLine, resolvable } from './packages.js';
import { registerWebgpuExtras } from './webgpu-extras.js';

/** What the Debian packages are, for messages: a GPU's own driver, or one of two software adapters. */
export const WEBGPU_INSTALL_HINT =
  'a GPU needs its Vulkan driver and the loader (Debian: `apt-get install libvulkan1` plus the vendor driver, e.g. nvidia-driver or mesa-vulkan-drivers); ' +
  'a software adapter (tests only): `apt-get install libegl-dev libegl-mesa0 libgl1-mesa-dri` (Dawn on OpenGL ES, stock Debian 12 Mesa; Dawn opens libEGL.so, from libegl-dev) ' +
  'or `apt-get install libvulkan1 mesa-vulkan-drivers/bookworm-backports` (lavapipe of Mesa 25; Debian 12\'s own Mesa 22 lavapipe is rejected by Dawn)';

export interface WebgpuAdapter {
  /** Dawn's backend that found it: vulkan, opengles, ... */
  route: string;
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** The adapter says it is a fallback (isFallbackAdapter). */
  fallback: boolean;
  /** A fallback adapter or a CPU rasteriser (lavapipe, llvmpipe, SwiftShader, softpipe). */
  software: boolean;
}

export interface WebgpuProbe {
  available: boolean;
  /** Why not, or the adapter in words. */
  detail: string;
  adapter?: WebgpuAdapter;
}

// The few WebGPU shapes this file touches (the full types are @webgpu/types, not loaded here).
interface GpuAdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}
interface GpuDeviceLike {
  destroy(): void;
  addEventListener(type: 'uncapturederror', f: (ev: { error?: { message?: string } }) => void): void;
}
interface GpuAdapterLike {
  info?: GpuAdapterInfoLike;
  isFallbackAdapter?: boolean;
  limits: Record<string, number>;
  features: Set<string>;
  requestDevice(desc?: unknown): Promise<GpuDeviceLike>;
}
interface GpuLike {
  requestAdapter(opts?: unknown): Promise<GpuAdapterLike | null>;
}
interface GpuBufferLike {
  size: number;
  mapState: 'unmapped' | 'pending' | 'mapped';
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
}
interface WebgpuBackendLike {
  tensorMap: { get(id: object): { values: tf.backend_util.BackendValues | null; dtype: tf.DataType; resource: unknown; complexTensorInfos?: { real: tf.TensorInfo; imag: tf.TensorInfo } } };
  bufferManager: { acquireBuffer(size: number, usage: number): GpuBufferLike; releaseBuffer(b: GpuBufferLike): void };
  commandEncoder: { copyBufferToBuffer(src: unknown, so: number, dst: GpuBufferLike, d: number, size: number): void };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  readSync(dataId: object): tf.backend_util.BackendValues;
  read(dataId: object): Promise<tf.backend_util.BackendValues>;
}
type WebgpuBackendClass = { prototype: WebgpuBackendLike } & (new (device: GpuDeviceLike, info?: GpuAdapterInfoLike) => tf.KernelBackend);

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|softpipe|software|basic render/i;


// ---- Dawn's event pump (see 3. above) ---------------------------------------------------------------

let dawnTick: (() => void) | null = null;
let tickHooked = false;

/** Wraps the global setImmediate, before dawn.node loads, to keep the ProcessEvents function it schedules. */
function hookDawnTick(): void {
  if (tickHooked) return;
  tickHooked = true;
  const real = globalThis.setImmediate as unknown as (...a: unknown[]) => unknown;
  const wrapped = function (this: unknown, fn: (...a: unknown[]) => void, ...args: unknown[]) {
    // dawn.node's is a native function scheduled without arguments; nothing else in pipec does that.
    if (typeof fn === 'function' && args.length === 0 && Function.prototype.toString.call(fn).includes('[native code]')) dawnTick = fn as () => void;
    return real.apply(this, [fn, ...args]);
  };
  Object.defineProperty(wrapped, promisify.custom, { get: () => (real as unknown as Record<symbol, unknown>)[promisify.custom] });
  globalThis.setImmediate = wrapped as unknown as typeof setImmediate;
}

const waitCell = new Int32Array(new SharedArrayBuffer(4));

/** Maps a MAP_READ buffer synchronously by running Dawn's event processing until the map completes. */
function mapReadSync(buffer: GpuBufferLike): void {
  const MAP_READ = (globalThis as unknown as { GPUMapMode: { READ: number } }).GPUMapMode.READ;
  let failure: unknown = null;
  buffer.mapAsync(MAP_READ).catch((e: unknown) => void (failure = e));
  const start = performance.now();
  for (let turn = 0; buffer.mapState === 'pending'; turn++) {
    if (failure) break;
    if (!dawnTick) throw new Error('webgpu: cannot read synchronously (Dawn scheduled no event processing)');
    dawnTick();
    if (buffer.mapState !== 'pending') break;
    // Yield the core to the (software) GPU's threads after the first few turns.
    if (turn > 8) Atomics.wait(waitCell, 0, 0, turn > 1000 ? 1 : 0.05);
    if (performance.now() - start > 600_000) throw new Error('webgpu: a synchronous read did not complete in 10 minutes');
  }
  if (buffer.mapState !== 'mapped') throw new Error(`webgpu: mapping a read-back buffer failed${failure ? `: ${firstLine(failure)}` : ''}`);
}

// WebGPU reports a rejected kernel (a validation error, out of memory) asynchronously, and the result
// then reads as zeros. The device's uncaptured errors are kept here and thrown by the next read.
let gpuError: string | null = null;

function throwGpuError(): void {
  if (gpuError === null) return;
  const m = gpuError;
  gpuError = null;
  throw new Error(`webgpu: the device rejected a kernel, so results are invalid: ${m.split('\n')[0]}`);
}

let backendPatched = false;

/**
 * readSync: tfjs's goes through OffscreenCanvas; ours copies to a staging buffer and maps it
 * synchronously. read and readSync throw the device's pending error, if any.
 */
function patchBackend(Backend: WebgpuBackendClass): void {
  if (backendPatched) return;
  backendPatched = true;
  const usage = (globalThis as unknown as { GPUBufferUsage: { COPY_DST: number; MAP_READ: number } }).GPUBufferUsage;
  Backend.prototype.readSync = function (this: WebgpuBackendLike, dataId: object): tf.backend_util.BackendValues {
    const data = this.tensorMap.get(dataId);
    if (data.values != null || data.dtype === 'string') return data.values!;
    if (data.dtype === 'complex64') {
      const re = this.readSync(data.complexTensorInfos!.real.dataId) as Float32Array;
      const im = this.readSync(data.complexTensorInfos!.imag.dataId) as Float32Array;
      const merged = tf.backend_util.mergeRealAndImagArrays(re, im);
      data.values = merged;
      return merged;
    }
    const src = data.resource as GpuBufferLike;
    const staging = this.bufferManager.acquireBuffer(src.size, usage.COPY_DST | usage.MAP_READ);
    this.ensureCommandEncoderReady();
    this.endComputePassEncoder();
    this.commandEncoder.copyBufferToBuffer(src, 0, staging, 0, src.size);
    this.submitQueue();
    mapReadSync(staging);
    const bytes = staging.getMappedRange().slice(0);
    staging.unmap();
    this.bufferManager.releaseBuffer(staging);
    throwGpuError();
    const values = tf.util.convertBackendValuesAndArrayBuffer(bytes, data.dtype);
    data.values = values; // as tfjs's async read does: the CPU copy is cached
    return values;
  };
  const read = Backend.prototype.read;
  Backend.prototype.read = async function (this: WebgpuBackendLike, dataId: object) {
    const values = await read.call(this, dataId);
    throwGpuError();
    return values;
  };
}

// ---- probing ----------------------------------------------------------------------------------------

interface DawnState {
  gpu: GpuLike;
  adapter: GpuAdapterLike;
  info: WebgpuAdapter;
  device?: GpuDeviceLike;
}

let state: DawnState | null = null;
/** The probe's answer, per setting of the two environment variables (an adapter does not come and go). */
const cache = new Map<string, WebgpuProbe>();
let dawnCreate: ((opts: string[]) => GpuLike) | null = null;

/** The Vulkan loader's soname is findable (otherwise Dawn only prints a warning and finds nothing). */
function vulkanLoaderPresent(): boolean {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib', '/lib/x86_64-linux-gnu'];
  return dirs.some((d) => fs.existsSync(path.join(d, 'libvulkan.so.1')));
}

function describe(route: string, adapter: GpuAdapterLike): WebgpuAdapter {
  const i = adapter.info ?? {};
  const fallback = !!(i.isFallbackAdapter ?? adapter.isFallbackAdapter);
  const a: WebgpuAdapter = {
    route, vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '', description: i.description ?? '', fallback, software: false,
  };
  a.software = fallback || SOFTWARE.test(`${a.architecture} ${a.device} ${a.description}`);
  return a;
}

/** One line for `pipec backends` and the log: `Dawn vulkan: mesa / software (llvmpipe ...), software adapter`. */
export function adapterSummary(a: WebgpuAdapter): string {
  const who = [a.vendor || 'unknown vendor', a.architecture || a.device || 'unknown architecture'].join(' / ');
  const what = a.description || a.device;
  return `Dawn ${a.route}: ${who}${what ? ` (${what})` : ''}${a.software ? `, software adapter${a.fallback ? ' (fallback)' : ''}` : ''}`;
}

function routes(): string[] {
  const forced = process.env.PIPEC_WEBGPU_BACKEND;
  return forced ? [forced] : vulkanLoaderPresent() ? ['vulkan', 'opengles'] : ['opengles'];
}

/** Tries Dawn's routes in order; a hardware adapter wins, else the first software one. */
async function findAdapter(create: (opts: string[]) => GpuLike, tryRoutes: string[]): Promise<DawnState | null> {
  let soft: DawnState | null = null;
  for (const route of tryRoutes) {
    const gl = route.startsWith('opengl');
    // Dawn's OpenGL ES backend reaches Mesa through EGL; without a display that is the surfaceless platform.
    if (gl && !process.env.EGL_PLATFORM) process.env.EGL_PLATFORM = 'surfaceless';
    let found: DawnState | null = null;
    try {
      const gpu = create([`backend=${route}`]);
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance', ...(gl ? { featureLevel: 'compatibility' } : {}) });
      if (adapter) found = { gpu, adapter, info: describe(route, adapter) };
    } catch {
      // an unknown backend name or a driver that fails to initialise: no adapter on this route
    }
    if (found && !found.info.software) return found;
    soft ??= found;
    // A software adapter on Vulkan (lavapipe) is as good as one on OpenGL ES (llvmpipe): stop there.
    if (soft) break;
  }
  return soft;
}

/** Loads dawn.node (once) and puts its WebGPU globals on globalThis. */
async function loadDawn(): Promise<(opts: string[]) => GpuLike> {
  if (dawnCreate) return dawnCreate;
  hookDawnTick(); // before dawn.node schedules anything
  const dawn = (await import('webgpu')) as unknown as { create: (opts: string[]) => GpuLike; globals: Record<string, unknown> };
  const g = globalThis as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in g)) g[k] = v;
  return (dawnCreate = dawn.create);
}

/**
 * Probes Dawn in a child process (once per process and setting): native libraries that Dawn's drivers
 * load (Mesa's LLVM through EGL) can clash with others loaded later in the same process (libtensorflow
 * segfaults on load after Dawn's OpenGL ES route), and `auto` or `pipec backends` must be able to probe
 * and then take another backend. Dawn is loaded into this process only when webgpu is activated.
 */
export async function probeWebgpu(): Promise<WebgpuProbe> {
  const key = `${process.env.PIPEC_WEBGPU_ADAPTER ?? ''}|${process.env.PIPEC_WEBGPU_BACKEND ?? ''}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const answer = async (): Promise<WebgpuProbe> => {
    if (process.env.PIPEC_WEBGPU_ADAPTER === 'none') return { available: false, detail: `no WebGPU adapter (PIPEC_WEBGPU_ADAPTER=none); ${WEBGPU_INSTALL_HINT}` };
    const missing = ['webgpu', '@tensorflow/tfjs-backend-webgpu'].filter((p) => !resolvable(p));
    if (missing.length) return { available: false, detail: `${missing.join(' and ')} not installed (\`npm install\` installs both)` };
    const child = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [fileURLToPath(import.meta.url), PROBE_FLAG], { timeout: 120_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) }));
    });
    const line = child.stdout.split('\n').find((l) => l.startsWith('{'));
    if (child.code !== 0 || !line) {
      const why = child.stderr.split('\n').filter((l) => l.trim() && !/^Warning:/.test(l)).pop() ?? `exit ${child.code}`;
      return { available: false, detail: `the Dawn probe failed: ${why.slice(0, 200)}` };
    }
    const r = JSON.parse(line) as { adapter: WebgpuAdapter | null; error?: string; tried: string[] };
    if (r.error) return { available: false, detail: `Dawn (the webgpu package) failed to load: ${r.error}` };
    if (!r.adapter) return { available: false, detail: `Dawn found no WebGPU adapter (tried ${r.tried.join(', ')}${vulkanLoaderPresent() ? '' : '; no Vulkan loader, libvulkan.so.1'}); ${WEBGPU_INSTALL_HINT}` };
    return { available: true, detail: adapterSummary(r.adapter), adapter: r.adapter };
  };
  const p = await answer();
  cache.set(key, p);
  return p;
}

const PROBE_FLAG = '--pipec-probe-webgpu';

/** The child's side: one JSON line, then exit (a live Dawn instance must not hold the process). */
async function probeChild(): Promise<void> {
  let out: { adapter: WebgpuAdapter | null; error?: string; tried: string[] } = { adapter: null, tried: routes() };
  try {
    const found = await findAdapter(await loadDawn(), routes());
    out = { adapter: found?.info ?? null, tried: routes() };
  } catch (e) {
    out = { adapter: null, error: firstLine(e), tried: routes() };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
}

if (process.argv[2] === PROBE_FLAG && process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await probeChild();

// ---- the tfjs backend -------------------------------------------------------------------------------

// tfjs makes a bind group for every dispatch and drops it. Its native half (a descriptor set; on
// lavapipe a 4 KiB memory mapping of its own) is freed only when the JS wrapper is finalised, and Node
// runs N-API finalisers on an event-loop turn: a loop that never yields keeps them all (lavapipe then
// reaches the kernel's 65530 mappings and crashes 45 s into the quickstart; other adapters grow by
// ~1.7 KB a dispatch). So the training loop yields once a step (train/run.ts). Caching bind groups by
// layout and buffers does not help: tfjs's buffer pool hands out different buffers each step (2% hits).

let factoryInstalled = false;

function setNavigatorGpu(gpu: GpuLike | undefined): void {
  const g = globalThis as unknown as { navigator?: Record<string, unknown> };
  if (!g.navigator) {
    if (!gpu) return;
    g.navigator = {};
  }
  Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true, enumerable: true });
}

/** Makes `webgpu` the tfjs backend on the probed adapter. False when there is none. */
export async function activateWebgpu(): Promise<boolean> {
  const p = await probeWebgpu();
  if (!p.available) return false;
  // the adapter the probe found, on its route, now in this process
  if (!state) state = await findAdapter(await loadDawn(), [p.adapter!.route]);
  if (!state) return false;
  setNavigatorGpu(state.gpu); // before the import (1. above)
  const wg = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as { WebGPUBackend: WebgpuBackendClass };
  patchBackend(wg.WebGPUBackend);
  registerWebgpuExtras();
  if (!factoryInstalled) {
    factoryInstalled = true;
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu'); // tfjs's own, on its own adapter
    // Priority 0: never tfjs's implicit default; pipec always names its backend.
    tf.registerBackend('webgpu', async () => {
      const s = state;
      if (!s) throw new Error('webgpu: released');
      const lim = s.adapter.limits;
      const keys = ['maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupSizeX',
        'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage'];
      const requiredLimits = Object.fromEntries(keys.filter((k) => typeof lim[k] === 'number').map((k) => [k, lim[k]]));
      s.device = await s.adapter.requestDevice({ requiredLimits });
      gpuError = null;
      s.device.addEventListener('uncapturederror', (ev) => void (gpuError ??= ev.error?.message ?? 'unknown error'));
      return new wg.WebGPUBackend(s.device, s.adapter.info);
    }, 0);
  }
  return tf.setBackend('webgpu');
}

/**
 * Drops the tfjs backend (its tensors with it), the device and the Dawn instance so that the process
 * can exit; a later activation finds the adapter again. A no-op when WebGPU was never loaded.
 */
export function releaseWebgpu(): void {
  if (factoryInstalled) {
    factoryInstalled = false;
    try {
      tf.removeBackend('webgpu'); // disposes the backend's buffers; the factory is registered again on use
    } catch {
      // not registered
    }
  }
  try {
    state?.device?.destroy();
  } catch {
    // already destroyed
  }
  state = null;
  setNavigatorGpu(undefined);
}
