// A traced step as TensorFlow's GraphDef, inside the SavedModel that tfjs-node's binding loads into a
// TF_Session (saved-model.ts). Field numbers are those of tensorflow/core/framework/{graph,node_def,
// attr_value,tensor,tensor_shape,versions}.proto and protobuf/{meta_graph,saved_model}.proto.
import { ProtoWriter } from './proto.js';

/** An attribute as tfjs-node passes it to its binding: `type` is a TF_AttrType. */
export interface OpAttr {
  name: string;
  type: number;
  value: unknown;
}

/** TF_AttrType values (tensorflow/c/tf_attrtype.h). */
export const ATTR = { STRING: 0, INT: 1, FLOAT: 2, BOOL: 3, TYPE: 4, SHAPE: 5 } as const;
/** TF_DataType values, which are also the DataType enum of the protos. */
export const DT = { FLOAT: 1, INT32: 3, UINT8: 4, INT64: 9, BOOL: 10 } as const;

export type TensorData = Float32Array | Int32Array | Uint8Array;

export type GraphNode =
  | { kind: 'placeholder'; name: string; dtype: number; shape: readonly number[] }
  | { kind: 'const'; name: string; dtype: number; shape: readonly number[]; data: TensorData }
  | { kind: 'op'; name: string; op: string; inputs: readonly string[]; attrs: readonly OpAttr[] };

/** The GraphDef version the graph says it was written at: new enough for every op tfjs-node runs. */
const PRODUCER = 1645;

function shapeProto(w: ProtoWriter, shape: readonly number[]): void {
  for (const d of shape) w.message(2, (dim) => dim.varint(1, d));
}

function tensorProto(w: ProtoWriter, dtype: number, shape: readonly number[], data: TensorData): void {
  w.varint(1, dtype);
  w.message(2, (s) => shapeProto(s, shape));
  w.bytes(4, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

function attrValue(w: ProtoWriter, a: OpAttr): void {
  const list = Array.isArray(a.value);
  switch (a.type) {
    case ATTR.STRING:
      if (list) throw new Error(`attribute ${a.name}: string lists are not supported`);
      w.string(2, String(a.value));
      return;
    case ATTR.INT:
      if (list) w.message(1, (l) => l.packedVarints(3, a.value as number[]));
      else w.varint(3, a.value as number);
      return;
    case ATTR.FLOAT:
      if (list) w.message(1, (l) => l.packedFloats(4, a.value as number[]));
      else w.float(4, a.value as number);
      return;
    case ATTR.BOOL:
      if (list) w.message(1, (l) => l.packedVarints(5, a.value as boolean[]));
      else w.varint(5, a.value as boolean);
      return;
    case ATTR.TYPE:
      w.varint(6, a.value as number);
      return;
    case ATTR.SHAPE:
      w.message(7, (s) => shapeProto(s, a.value as number[]));
      return;
    default:
      throw new Error(`attribute ${a.name}: TF_AttrType ${a.type} is not supported`);
  }
}

function nodeDef(w: ProtoWriter, n: GraphNode): void {
  const attr = (name: string, write: (v: ProtoWriter) => void) => w.message(5, (e) => e.string(1, name).message(2, write));
  w.string(1, n.name);
  if (n.kind === 'placeholder') {
    w.string(2, 'Placeholder');
    attr('dtype', (v) => v.varint(6, n.dtype));
    attr('shape', (v) => v.message(7, (s) => shapeProto(s, n.shape)));
  } else if (n.kind === 'const') {
    w.string(2, 'Const');
    attr('dtype', (v) => v.varint(6, n.dtype));
    attr('value', (v) => v.message(8, (t) => tensorProto(t, n.dtype, n.shape, n.data)));
  } else {
    w.string(2, n.op);
    for (const i of n.inputs) w.string(3, i);
    for (const a of n.attrs) attr(a.name, (v) => attrValue(v, a));
  }
}

/** saved_model.pb holding one MetaGraphDef tagged `tag` whose graph is `nodes`. */
export function savedModelBytes(nodes: readonly GraphNode[], tag: string): Uint8Array {
  return new ProtoWriter()
    .varint(1, 1) // saved_model_schema_version
    .message(2, (meta) =>
      meta
        .message(1, (info) => info.string(4, tag)) // meta_info_def.tags
        .message(2, (graph) => {
          for (const n of nodes) graph.message(1, (w) => nodeDef(w, n));
          graph.message(4, (v) => v.varint(1, PRODUCER)); // versions.producer
        }),
    )
    .finish();
}
