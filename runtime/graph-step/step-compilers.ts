// What a compiled step is made of on each backend that has one. A compiler gives a recording (a trace
// of one eager step, feed-trace.ts) and builds an executable from a recording that two steps agreed on:
//   - tensorflow: the binding's ops as a GraphDef (trace.ts, graph-def.ts), loaded as a SavedModel
//     into a TF_Session by tfjs-node's own binding, run once a step;
//   - wasm: the kernels the engine called (kernel-trace.ts), called again in order straight on the
//     backend (kernel-replay.ts).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import type { FeedTrace } from './feed-trace.js';
import { savedModelBytes } from './graph-def.js';
import { KernelReplay } from './kernel-replay.js';
import { type KernelBackend, KernelTrace } from './kernel-trace.js';
import { type NodeBackend, StepTrace } from './trace.js';

export interface StepRecording extends FeedTrace<unknown> {
  /** Runs `step` eagerly while recording it. */
  record<T>(step: () => T): T;
  /** The tensors the step ends with: they are the executable's outputs, in this order. */
  finish(finals: readonly tf.Tensor[]): void;
  /** Bytes that two recordings of one program share exactly. */
  signature(): Uint8Array;
}

export interface StepExecutable {
  /** Runs the step on the recording's inputs in order; its outputs are tensors the caller owns. */
  run(fed: readonly tf.Tensor[]): tf.Tensor[];
  dispose(): void;
  /** What it is, for the log: "one TensorFlow graph (1,234 ops, 56 inputs)". */
  describe: string;
}

export interface StepCompiler {
  /** Who builds it, and what one is called, for notes: "TensorFlow", "graph". */
  name: string;
  unit: string;
  recording(state: ReadonlyMap<string, tf.Tensor>): StepRecording;
  /** Throws when the recording cannot be built (the step then stays eager). */
  build(r: StepRecording): StepExecutable;
}

const DT_NAMES: Record<number, string> = { 1: 'DT_FLOAT', 3: 'DT_INT32', 10: 'DT_BOOL' };

export class TfGraphCompiler implements StepCompiler {
  readonly name = 'TensorFlow';
  readonly unit = 'graph';
  constructor(private readonly backend: NodeBackend) {}

  recording(state: ReadonlyMap<string, tf.Tensor>): StepTrace {
    return new StepTrace(this.backend, state);
  }

  build(r: StepRecording): StepExecutable {
    const trace = r as unknown as StepTrace;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pipec-step-'));
    let session: number;
    try {
      fs.writeFileSync(path.join(dir, 'saved_model.pb'), savedModelBytes(trace.nodes, 'serve'));
      session = this.backend.loadSavedModelMetaGraph(dir, 'serve');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const infos = trace.inputs.map((i) => ({ name: `${i.name}:0`, tfDtype: DT_NAMES[i.dtype] ?? 'DT_FLOAT' }));
    const outputs = trace.outputNames.map((o) => `${o}:0`);
    const ops = trace.nodes.filter((n) => n.kind === 'op').length;
    return {
      run: (fed) => this.backend.runSavedModel(session, [...fed], infos, outputs),
      dispose: () => this.backend.deleteSavedModel(session),
      describe: `one TensorFlow graph (${ops} ops, ${trace.inputs.length} inputs)`,
    };
  }
}

export class KernelReplayCompiler implements StepCompiler {
  readonly name = 'the kernel replay';
  readonly unit = 'kernel list';
  constructor(private readonly backendName: string, private readonly backend: KernelBackend) {}

  recording(state: ReadonlyMap<string, tf.Tensor>): KernelTrace {
    return new KernelTrace(this.backendName, this.backend, state);
  }

  build(r: StepRecording): StepExecutable {
    const trace = r as unknown as KernelTrace;
    const replay = new KernelReplay(this.backend, trace);
    return {
      run: (fed) => replay.run(fed),
      dispose: () => replay.dispose(),
      describe: `a replay of ${replay.kernels} ${this.backendName} kernels (${trace.inputs.length} inputs)`,
    };
  }
}
