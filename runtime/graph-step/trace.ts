// Records one eager training step on the tensorflow backend as a graph. tfjs-node runs every kernel as
// one TensorFlow op through its binding (executeOp), so the binding sees the whole step -- forward,
// tfjs's gradients, clipping, the optimizer -- as ops with their attributes and inputs. The trace wraps
// that binding while the step runs (the step itself still executes, eagerly, as the reference):
//   - an op becomes a graph node; its outputs are named after it;
//   - a tensor made from JavaScript data is a Const, unless a batch feed made it (ops/batch-feeds.ts):
//     then it is a Placeholder, and the recipe to make it again from the next batch is kept;
//   - a parameter or optimizer slot that existed before the step is a Placeholder fed its value;
//   - reading a tensor back to JavaScript, or a feed the trace cannot place, refuses the trace.
import * as tf from '@tensorflow/tfjs-core';
import { replaceKernel } from '../backend/replace-kernel.js';
import { FeedTrace, type InputRecipe } from './feed-trace.js';
import { ATTR, DT, type GraphNode, type OpAttr, savedModelBytes, type TensorData } from './graph-def.js';

interface OutputInfo {
  id: number;
  shape: number[];
  dtype: number;
}

/** The parts of tfjs-node's native binding a trace wraps. */
export interface NodeBinding {
  executeOp(name: string, attrs: OpAttr[], ids: number[], outputs: number): OutputInfo[];
  createTensor(shape: number[], dtype: number, values: unknown): number;
  tensorDataSync(id: number): TensorData;
}

/** The parts of tfjs-node's NodeJSKernelBackend a compiled step uses. */
export interface NodeBackend {
  binding: NodeBinding;
  getInputTensorIds(tensors: tf.Tensor[]): number[];
  loadSavedModelMetaGraph(path: string, tags: string): number;
  runSavedModel(id: number, inputs: tf.Tensor[], infos: { name: string; tfDtype: string }[], outputs: string[]): tf.Tensor[];
  deleteSavedModel(id: number): void;
}

/** Set while a tfjs-node kernel reads its inputs only to validate them (it throws or goes on the same way). */
let validating = 0;
let validationWrapped = false;

/**
 * tfjs-node's GatherV2 reads its indices back to JavaScript to check their bounds. That read decides
 * nothing in the graph (TensorFlow's GatherV2 checks them again when the graph runs), so reads made
 * inside it do not refuse a trace.
 */
function allowValidationReads(): void {
  if (validationWrapped) return;
  validationWrapped = true;
  for (const name of ['GatherV2'])
    replaceKernel(name, 'tensorflow', (stock) => (args) => {
      validating++;
      try {
        return stock.kernelFunc(args);
      } finally {
        validating--;
      }
    });
}

/**
 * Type attributes tfjs-node leaves to eager execution's inference (it passes no attrs for these ops),
 * which a GraphDef must spell out: attr name -> the input whose dtype it is.
 */
const INFERRED_TYPES: Record<string, Record<string, number>> = { ExpandDims: { T: 0 } };

const DTYPES: Record<string, number> = { float32: DT.FLOAT, int32: DT.INT32, bool: DT.BOOL };
const GRAPH_DTYPES = new Set<number>([DT.FLOAT, DT.INT32, DT.BOOL, DT.INT64, DT.UINT8]);

export class StepTrace extends FeedTrace {
  readonly nodes: GraphNode[] = [];
  /** Binding tensor id -> the graph tensor that holds its value. */
  private readonly ref = new Map<number, string>();
  private readonly known = new Map<number, { shape: number[]; dtype: number }>();
  private readonly state = new Map<number, string>();
  private pending?: InputRecipe;
  private counter = 0;

  /** `state`: the step's parameters and optimizer slots by key, fed their value at every step. */
  constructor(private readonly backend: NodeBackend, state: ReadonlyMap<string, tf.Tensor>) {
    super();
    allowValidationReads();
    for (const [key, t] of state) {
      const id = backend.getInputTensorIds([t])[0]!;
      if (!this.state.has(id)) this.state.set(id, key);
      this.known.set(id, { shape: t.shape, dtype: DTYPES[t.dtype]! });
    }
  }

  /** Runs `step` eagerly with the binding wrapped; the graph is in `nodes` afterwards. */
  record<T>(step: () => T): T {
    const backend = this.backend;
    const raw = backend.binding;
    const ownIds = Object.getOwnPropertyDescriptor(backend, 'getInputTensorIds');
    const inputIds = backend.getInputTensorIds;
    backend.binding = {
      executeOp: (name, attrs, ids, n) => this.op(raw, name, attrs, ids, n),
      createTensor: (shape, dtype, values) => this.create(raw, shape, dtype, values),
      tensorDataSync: (id) => {
        if (this.ref.has(id) && !validating) this.refuse('the step reads a tensor back to JavaScript');
        return raw.tensorDataSync(id);
      },
    };
    Object.setPrototypeOf(backend.binding, raw);
    backend.getInputTensorIds = (tensors) => {
      const ids = inputIds.call(backend, tensors);
      tensors.forEach((t, i) => this.known.set(ids[i]!, { shape: t.shape, dtype: DTYPES[t.dtype] ?? -1 }));
      return ids;
    };
    try {
      return step();
    } finally {
      backend.binding = raw;
      if (ownIds) Object.defineProperty(backend, 'getInputTensorIds', ownIds);
      else delete (backend as { getInputTensorIds?: unknown }).getInputTensorIds;
    }
  }

  /** tfjs-node writes a tensor's values to the binding when an op first reads it: so written now, it is a Placeholder. */
  protected placeFeed(t: tf.Tensor, recipe: InputRecipe & { kind: 'feed' }): boolean {
    this.pending = recipe;
    this.backend.getInputTensorIds([t]); // create() sees `pending` and makes a Placeholder
    const placed = this.pending === undefined;
    this.pending = undefined;
    return placed;
  }

  /** Names of the Identity nodes (out0, out1, ...) that hold the step's final tensors (finish). */
  outputNames: string[] = [];

  /** Identity nodes named out0, out1, ... for the values the step ends with. */
  finish(finals: readonly tf.Tensor[]): void {
    this.outputNames = finals.map((t) => {
      const id = this.backend.getInputTensorIds([t])[0]!;
      if (!this.known.has(id)) this.known.set(id, { shape: t.shape, dtype: DTYPES[t.dtype]! }); // a JS-made value (a zero loss)
      const name = `out${this.counter++}`;
      this.nodes.push({ kind: 'op', name, op: 'Identity', inputs: [this.refOf(id)], attrs: [{ name: 'T', type: ATTR.TYPE, value: DTYPES[t.dtype]! }] });
      return name;
    });
  }

  /** The graph as the SavedModel it is loaded from: two traces of one program write the same bytes. */
  signature(): Uint8Array {
    return savedModelBytes(this.nodes, 'serve');
  }

  private op(raw: NodeBinding, name: string, attrs: OpAttr[], ids: number[], n: number): OutputInfo[] {
    const inputs = ids.map((id) => this.refOf(id));
    const outs = raw.executeOp(name, attrs, ids, n);
    const node = `n${this.counter++}`;
    const all = attrs.map((a) => ({ ...a }));
    for (const [attr, input] of Object.entries(INFERRED_TYPES[name] ?? {}))
      if (!all.some((a) => a.name === attr)) all.push({ name: attr, type: ATTR.TYPE, value: this.known.get(ids[input]!)?.dtype ?? DT.FLOAT });
    this.nodes.push({ kind: 'op', name: node, op: name, inputs, attrs: all });
    outs.forEach((m, i) => {
      if (!GRAPH_DTYPES.has(m.dtype)) this.refuse(`op ${name} makes a tensor of TF_DataType ${m.dtype}`);
      this.ref.set(m.id, i ? `${node}:${i}` : node);
      this.known.set(m.id, { shape: m.shape, dtype: m.dtype });
    });
    return outs;
  }

  private create(raw: NodeBinding, shape: number[], dtype: number, values: unknown): number {
    const id = raw.createTensor(shape, dtype, values);
    if (this.pending) {
      const name = `in${this.counter++}`;
      this.inputs.push({ name, dtype, shape: [...shape], recipe: this.pending });
      this.nodes.push({ kind: 'placeholder', name, dtype, shape });
      this.pending = undefined;
      this.ref.set(id, name);
    } else if (values instanceof Float32Array || values instanceof Int32Array || values instanceof Uint8Array) {
      const name = `c${this.counter++}`;
      this.nodes.push({ kind: 'const', name, dtype, shape: [...shape], data: values.slice() });
      this.ref.set(id, name);
    } else this.refuse(`a tensor of dtype ${dtype} made from JavaScript values cannot be a graph constant`);
    this.known.set(id, { shape, dtype });
    return id;
  }

  /** The graph tensor for a binding id: an op's output, a feed, a parameter, or a captured constant. */
  private refOf(id: number): string {
    const seen = this.ref.get(id);
    if (seen) return seen;
    const info = this.known.get(id);
    if (!info || !GRAPH_DTYPES.has(info.dtype)) {
      this.refuse(`the step reads tensor ${id}, which it did not make and cannot capture`);
      return 'unknown';
    }
    const key = this.state.get(id);
    const name = key !== undefined ? `in${this.counter++}` : `c${this.counter++}`;
    if (key !== undefined) {
      this.inputs.push({ name, dtype: info.dtype, shape: info.shape, recipe: { kind: 'state', key } });
      this.nodes.push({ kind: 'placeholder', name, dtype: info.dtype, shape: info.shape });
    } else {
      // made before the step and not a parameter (a cached table): its value now is part of the graph
      const data = this.backend.binding.tensorDataSync.call(this.backend.binding, id);
      this.nodes.push({ kind: 'const', name, dtype: info.dtype, shape: info.shape, data });
    }
    this.ref.set(id, name);
    return name;
  }
}
