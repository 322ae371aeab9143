// The compiler as a library (`import ... from 'pipec/compiler'`): compile a .pipe program to diagnostics
// and its execution graph, render diagnostics, format source. It loads no runtime (no TensorFlow.js);
// `import ... from 'pipec'` (index.ts at the package root) adds the runtime. docs/api.md.
export { compile, graphJson, nodeHost, UsageError, type CompileRequest, type CompileResult } from './service/service.js';
export { compareDiagnostics, hasErrors, type Diagnostic, type Fix, type RelatedInfo, type Severity } from './diagnostics/diagnostic.js';
export { renderAll, renderDiagnostic, summary, type RenderOptions } from './diagnostics/render.js';
export { M as CATALOGUE, type MessageDef } from './diagnostics/catalogue.js';
export { format, type FormatResult } from './format/format.js';
export { validateGraph } from './ir/validate.js';
export { GRAPH_FORMAT, GRAPH_VERSION } from './ir/graph.js';
export type { AttrValue, ComponentDef, Dim, Graph, ModelDef, NodeDef, StagePlan, TensorDef } from './ir/graph.js';
