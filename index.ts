// pipec as a library: `import { compile, runProgram, openRun, ... } from 'pipec'`. These are the
// functions the `pipec` command itself calls (cli/main.ts, cli/runtime-commands.ts), with their
// types; docs/api.md shows them in use. `pipec/compiler` is the compiler alone, without TensorFlow.js.

// ---- compiling (pipec check / compile / graph / fmt) ----
export * from './compiler/index.js';

// ---- running (pipec run / generate / backends) ----
export { BACKEND_NAMES, initBackend, probeBackends, type ActiveBackend, type BackendChoice, type BackendProbe } from './runtime/backend/backends.js';
export { releaseWebgpu } from './runtime/backend/webgpu.js';
export { loadGraphFile } from './cli/runtime-commands.js';
export { graphHash, runProgram, type RunOptions, type RunSummary } from './runtime/train/run.js';
export { Progress } from './runtime/train/progress.js';
export { generateFromRun, type GenerateRunOptions } from './runtime/train/generate-run.js';
export { PipeRuntimeError, type ErrorLocation } from './runtime/errors.js';

// ---- a finished run: its model, its data, the loss of a batch ----
export { evaluateBatch, loadRunModel, openRun, readRunGraph, runSamples, trainedTemplate, type BatchEvaluation, type LoadedModel, type OpenedRun } from './runtime/train/open-run.js';
export { collate, type Batch, type Sample } from './runtime/data/batch.js';
export { imageShapeOf, preprocessFor, type PreparedDataset } from './runtime/data/datasets.js';
export { buildExample, buildPrompt, layout, type Example, type TemplateSpec, type Turn } from './runtime/data/examples.js';
export { loadImageFile, preprocessImage } from './runtime/data/images.js';
export { loadTokenizer, type Tokenizer } from './runtime/data/tokenizer.js';
export type { TextTokenizer } from './runtime/data/vocab-tokenizer.js';
export { ModelRunner, type ForwardResult, type ModelInputs } from './runtime/model.js';
export { generate, type GenerateOptions, type Prompt } from './runtime/generate.js';

// ---- exporting (pipec export / prepare) ----
export { exportTorch, ExportError, type TorchExportOptions } from './runtime/export/torch.js';
export { exportHf, type HfExportOptions, type HfExportResult } from './runtime/export/hf.js';
export { prepareStages, type PrepareOptions, type PreparedStage } from './runtime/export/prepare.js';
