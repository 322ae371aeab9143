// The typed AST. Every node carries its source range; passes attach diagnostics to nodes, never to offsets.
import type { Range } from '../diagnostics/source.js';

export interface Ident {
  kind: 'Ident';
  name: string;
  range: Range;
}

// ---- expressions -------------------------------------------------------------------------------------

export type Expr =
  | NumberExpr
  | QuantityExpr
  | StringExpr
  | BoolExpr
  | RefExpr
  | MemberExpr
  | CallExpr
  | IndexExpr
  | ListExpr
  | ObjectExpr
  | BinaryExpr
  | UnaryExpr
  | IfExpr
  | MissingExpr;

export interface NumberExpr {
  kind: 'Number';
  value: number;
  text: string;
  range: Range;
}
/** A number with a unit glued on: `80GB`, `7B`. */
export interface QuantityExpr {
  kind: 'Quantity';
  value: number;
  unit: string;
  text: string;
  range: Range;
}
export interface StringExpr {
  kind: 'String';
  value: string;
  range: Range;
}
export interface BoolExpr {
  kind: 'Bool';
  value: boolean;
  range: Range;
}
export interface RefExpr {
  kind: 'Ref';
  name: string;
  range: Range;
}
export interface MemberExpr {
  kind: 'Member';
  object: Expr;
  member: Ident;
  range: Range;
}
export interface Arg {
  kind: 'Arg';
  name?: Ident;
  value: Expr;
  range: Range;
}
export interface CallExpr {
  kind: 'Call';
  callee: Expr;
  args: Arg[];
  range: Range;
}
/** `Tensor[n, hidden]`: a shape type, written as an index expression. */
export interface IndexExpr {
  kind: 'Index';
  object: Expr;
  items: Expr[];
  range: Range;
}
export interface ListExpr {
  kind: 'List';
  items: Expr[];
  range: Range;
}
export interface Field {
  kind: 'Field';
  name: Ident;
  value: Expr;
  range: Range;
}
export interface ObjectExpr {
  kind: 'Object';
  fields: Field[];
  range: Range;
}
export type BinaryOp = '|' | 'or' | 'and' | '==' | '!=' | '<' | '<=' | '>' | '>=' | '+' | '-' | '*' | '/' | '%' | '**' | 'x';
export interface BinaryExpr {
  kind: 'Binary';
  op: BinaryOp;
  left: Expr;
  right: Expr;
  opRange: Range;
  range: Range;
}
export interface UnaryExpr {
  kind: 'Unary';
  op: '-' | 'not';
  operand: Expr;
  range: Range;
}
export interface IfExpr {
  kind: 'If';
  cond: Expr;
  then: Expr;
  else: Expr;
  range: Range;
}
/** What error recovery leaves where an expression was expected; passes skip it silently. */
export interface MissingExpr {
  kind: 'Missing';
  range: Range;
}

// ---- declarations ------------------------------------------------------------------------------------

export type Role = 'encoder' | 'projector' | 'llm';
export type SignatureKind = Role | 'data' | 'optimizer' | 'schedule' | 'device' | 'adapter';

export interface ImportDecl {
  kind: 'Import';
  path: StringExpr;
  range: Range;
}

/** `encoder vision = siglip_vit(...) weights "dir"` inside a model. */
export interface ComponentDecl {
  kind: 'Component';
  role: Role;
  roleRange: Range;
  name: Ident;
  init: Expr;
  weights?: StringExpr;
  range: Range;
}

/** `flow vision -> proj -> lm at "<image>"` */
export interface FlowDecl {
  kind: 'Flow';
  chain: Ident[];
  at?: StringExpr;
  range: Range;
}

/** `adapter lm.lora = lora(rank: 16, targets: ["q_proj", "v_proj"])` inside a model. */
export interface AdapterDecl {
  kind: 'Adapter';
  /** The adapted component (`lm`). */
  component: Ident;
  /** The adapter's own name (`lora`); stages refer to it as `lm.lora`. */
  name: Ident;
  init: Expr;
  range: Range;
}

export interface ModelDecl {
  kind: 'Model';
  name: Ident;
  components: ComponentDecl[];
  flows: FlowDecl[];
  adapters: AdapterDecl[];
  range: Range;
}

export interface DatasetDecl {
  kind: 'Dataset';
  name: Ident;
  init: Expr;
  range: Range;
}

export interface StageDecl {
  kind: 'Stage';
  name: Ident;
  fields: Field[];
  range: Range;
}

export interface TemplateDecl {
  kind: 'Template';
  name: Ident;
  fields: Field[];
  range: Range;
}

/** `hidden: int = 1152` in a signature. The type is an expression: `int`, `"a" | "b"`, `template`. */
export interface ParamDecl {
  kind: 'Param';
  name: Ident;
  type: Expr;
  default?: Expr;
  range: Range;
}

export interface PresetDecl {
  kind: 'Preset';
  name: StringExpr;
  args: Arg[];
  range: Range;
}

/** `tensor "model.layers.{i}.mlp.up_proj.weight" [mlp, hidden] for i < layers if not tie` */
export interface TensorDecl {
  kind: 'Tensor';
  name: StringExpr;
  dims: Expr[];
  loops: { var: Ident; bound: Expr }[];
  cond?: Expr;
  range: Range;
}

export type SignatureItem = PresetDecl | TensorDecl | Field;

/** A constructor's signature: `encoder siglip_vit(params) : In -> Out where conds { items }` */
export interface SignatureDecl {
  kind: 'Signature';
  sigKind: SignatureKind;
  name: Ident;
  params: ParamDecl[];
  input?: Expr;
  output?: Expr;
  where: Expr[];
  items: SignatureItem[];
  range: Range;
}

export type Decl = ModelDecl | DatasetDecl | StageDecl | TemplateDecl | SignatureDecl;

export interface FileNode {
  kind: 'File';
  path: string;
  imports: ImportDecl[];
  decls: Decl[];
  range: Range;
}

export type AnyNode = Expr | Decl | ImportDecl | ComponentDecl | FlowDecl | ParamDecl | PresetDecl | TensorDecl | Field | Arg | Ident | FileNode;
