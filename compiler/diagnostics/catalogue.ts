// Every diagnostic pipec can report, in one place, numbered in bands:
//   1xxx lexing and parsing        2xxx names and imports        3xxx types and parameters
//   4xxx shapes and flows          5xxx stages                   6xxx custom code and checkpoints
//   7xxx memory                    8xxx run configuration (YAML / --set)
//   9xxx runtime: data, tokenizers, backends, training, checkpoints (reported by `pipec run` / `generate`)
// A code is never reused for a different meaning. `test/catalogue.test.ts` checks codes are unique and
// that each one is exercised by a golden case.
import type { Severity } from './diagnostic.js';

export interface MessageDef<A extends unknown[]> {
  code: string;
  severity: Severity;
  format: (...args: A) => string;
}

function def<A extends unknown[]>(code: number, severity: Severity, format: (...args: A) => string): MessageDef<A> {
  return { code: `PIPE${code}`, severity, format };
}

export const M = {
  // ---- 1xxx syntax ----
  UnexpectedCharacter: def(1001, 'error', (ch: string) => `unexpected character '${ch}'`),
  UnterminatedString: def(1002, 'error', () => 'unterminated string literal'),
  UnterminatedComment: def(1003, 'error', () => 'unterminated block comment'),
  ExpectedToken: def(1010, 'error', (expected: string, found: string) => `expected ${expected} but found ${found}`),
  UnexpectedToken: def(1011, 'error', (found: string, context: string) => `unexpected ${found}: expected ${context}`),
  TrailingInput: def(1012, 'error', (found: string) => `unexpected ${found} after the end of the declaration`),
  BadEscape: def(1013, 'error', (esc: string) => `unknown escape sequence '${esc}' in string`),
  NestingTooDeep: def(1014, 'error', (limit: number) => `this expression nests more than ${limit} levels deep; the rest of it is not read`),
  /** Stands for the diagnostics of a file past the first MAX_PER_FILE; its severity is the worst of theirs. */
  TooManyDiagnostics: def(1015, 'error', (more: number, shown: number) => `${more} more diagnostic${more === 1 ? '' : 's'} in this file, not shown (the first ${shown} are)`),

  // ---- 2xxx names and imports ----
  ImportNotFound: def(2001, 'error', (path: string) => `cannot find import "${path}"`),
  UnknownName: def(2002, 'error', (what: string, name: string) => `unknown ${what} \`${name}\``),
  DuplicateDeclaration: def(2003, 'error', (what: string, name: string) => `duplicate ${what} \`${name}\``),
  UnknownComponent: def(2004, 'error', (name: string, model: string) => `model \`${model}\` has no component \`${name}\``),
  UnknownConstructor: def(2005, 'error', (name: string) => `unknown constructor \`${name}\``),
  UnknownPreset: def(2006, 'error', (preset: string, ctor: string) => `\`${ctor}\` has no preset "${preset}"`),
  AfterCycle: def(2007, 'error', (cycle: string) => `stages form a cycle through \`after\`: ${cycle}`),
  UnknownMember: def(2008, 'error', (member: string, component: string) => `component \`${component}\` has no parameter \`${member}\``),
  UnknownStageField: def(2009, 'error', (field: string) => `unknown stage field \`${field}\``),
  DuplicateField: def(2010, 'error', (field: string) => `field \`${field}\` is given twice`),
  WrongDeclKind: def(2011, 'error', (name: string, actual: string, expected: string) => `\`${name}\` is ${actual}, but ${expected} is expected here`),
  ImportCycle: def(2012, 'error', (cycle: string) => `this import closes a cycle: ${cycle}`),
  DataFileNotFound: def(2013, 'error', (dataset: string, file: string, why: string) => `data file "${file}" of dataset \`${dataset}\` ${why}`),
  ImagesFolderNotFound: def(2014, 'error', (dataset: string, dir: string, why: string) => `images folder "${dir}" of dataset \`${dataset}\` ${why}`),
  AdapterTargetUnknown: def(2016, 'error', (target: string, component: string, ctor: string) => `\`${component}\` (${ctor}) has no linear layer \`${target}\` to adapt`),
  UnknownAdapter: def(2017, 'error', (name: string, model: string) => `model \`${model}\` has no adapter \`${name}\``),
  AdapterTargetTaken: def(2018, 'error', (adapter: string, target: string, component: string, other: string) => `adapter \`${adapter}\` targets \`${target}\` of \`${component}\`, which adapter \`${other}\` already adapts; a layer takes one adapter`),
  TokenizerNotFound: def(2015, 'error', (dataset: string, file: string, why: string) => `tokenizer file "${file}" of dataset \`${dataset}\` ${why}`),

  // ---- 3xxx types and parameters ----
  UnknownParameter: def(3001, 'error', (param: string, ctor: string) => `\`${ctor}\` has no parameter \`${param}\``),
  MissingParameter: def(3002, 'error', (param: string, ctor: string) => `missing required parameter \`${param}\` of \`${ctor}\``),
  TypeMismatch: def(3003, 'error', (what: string, expected: string, actual: string) => `${what} expects ${expected}, got ${actual}`),
  NotInEnum: def(3004, 'error', (what: string, allowed: string, actual: string) => `${what} must be one of ${allowed}, got ${actual}`),
  DuplicateArgument: def(3005, 'error', (param: string) => `parameter \`${param}\` is given twice`),
  PositionalArgument: def(3006, 'error', (ctor: string, max: number) => `\`${ctor}\` takes at most ${max} positional argument${max === 1 ? '' : 's'}; name the rest (\`name: value\`)`),
  RoleMismatch: def(3007, 'error', (ctor: string, actual: string, role: string) => `\`${ctor}\` is ${actual} constructor and cannot build ${role}`),
  CannotEvaluate: def(3008, 'error', (why: string) => `cannot evaluate expression: ${why}`),
  ReferenceCycle: def(3009, 'error', (cycle: string) => `parameters refer to each other in a cycle: ${cycle}`),
  UnknownType: def(3010, 'error', (type: string) => `unknown parameter type \`${type}\``),
  OutOfRange: def(3011, 'error', (what: string, constraint: string, actual: string) => `${what} must be ${constraint}, got ${actual}`),
  UnknownUnit: def(3012, 'error', (unit: string, allowed: string) => `unknown unit \`${unit}\`; use one of ${allowed}`),
  NotACall: def(3013, 'error', (what: string) => `${what} must be a constructor call such as \`name(arg: value)\``),

  // ---- 4xxx shapes and flows ----
  ConstraintFailed: def(4001, 'error', (ctor: string, constraint: string, values: string) => `\`${ctor}\` requires ${constraint}, but ${values}`),
  FlowShapeMismatch: def(4002, 'error', (from: string, out: string, to: string, expected: string, detail: string) => `\`${from}\` produces ${out} but \`${to}\` expects ${expected}: ${detail}`),
  FlowRoleOrder: def(4003, 'error', (from: string, fromRole: string, to: string, toRole: string) => `a flow cannot go from ${fromRole} \`${from}\` to ${toRole} \`${to}\``),
  SpliceMissing: def(4004, 'error', (llm: string) => `image features flow into \`${llm}\` without a splice marker; write \`at "<image>"\``),
  ImageTokensExceedLength: def(4005, 'error', (tokens: number, maxLength: number) => `${tokens} image tokens leave no room for text in max_length ${maxLength}`),
  LengthExceedsContext: def(4006, 'error', (maxLength: number, llm: string, context: number) => `max_length ${maxLength} exceeds the context length ${context} of \`${llm}\``),
  UnconnectedComponent: def(4007, 'error', (name: string) => `component \`${name}\` is not connected by any flow`),
  BadDimension: def(4008, 'error', (dim: string, value: string) => `dimension ${dim} must be a positive integer, got ${value}`),
  RankMismatch: def(4009, 'error', (from: string, rank: number, to: string, expected: number) => `\`${from}\` produces a rank-${rank} tensor but \`${to}\` expects rank ${expected}`),
  NoLlm: def(4010, 'error', (model: string) => `model \`${model}\` has no llm component`),
  ImageTokensMismatch: def(4011, 'error', (declared: number, actual: number) => `the dataset declares ${declared} image tokens but the encoder produces ${actual}`),
  TokenizerExceedsVocab: def(4012, 'error', (file: string, size: number, detail: string, llm: string, vocab: number) => `tokenizer "${file}" has ${size} token ids (${detail}) but \`${llm}.vocab\` is ${vocab}`),
  MarkerOutsideVocab: def(4013, 'error', (marker: string, id: number, file: string, llm: string, vocab: number) => `the image marker "${marker}" is token id ${id} of "${file}", outside \`${llm}.vocab\` of ${vocab}`),
  TokenizerUnreadableAtCheck: def(4014, 'error', (file: string, why: string) => `cannot read tokenizer "${file}" to check its size: ${why}`),
  RoleGivenTwice: def(4015, 'error', (spelling: string, first: string, second: string) => `roles: "${spelling}" is given for both \`${first}\` and \`${second}\``),
  TwoTokenizers: def(4016, 'error', (dataset: string, file: string, first: string, firstFile: string) => `dataset \`${dataset}\` names tokenizer "${file}" but \`${first}\` names "${firstFile}"; a run uses one tokenizer`),

  // ---- 5xxx stages ----
  TrainedAndFrozen: def(5001, 'error', (name: string, stage: string, what = 'component') => `${what} \`${name}\` is both trained and frozen in stage \`${stage}\``),
  NeitherTrainedNorFrozen: def(5002, 'error', (name: string, stage: string, what = 'component') => `${what} \`${name}\` is neither trained nor frozen in stage \`${stage}\``),
  TrainsNothing: def(5003, 'error', (stage: string) => `stage \`${stage}\` trains nothing`),
  HandOffShapeChanged: def(5004, 'error', (name: string, from: string, before: string, after: string) => `component \`${name}\` changes shape across the hand-off from \`${from}\`: ${before} -> ${after}`),
  MissingStageField: def(5005, 'error', (fields: string, stage: string) => `stage \`${stage}\` needs \`${fields}\``),
  EpochsAndSteps: def(5006, 'error', (stage: string) => `stage \`${stage}\` gives both \`epochs\` and \`steps\`; keep one`),
  HandOffNothing: def(5007, 'warning', (stage: string, from: string) => `stage \`${stage}\` starts after \`${from}\` but takes over none of its trained components`),
  ShardingNeedsDevices: def(5008, 'warning', (sharding: string) => `sharding ${sharding} has no effect on a single device`),
  FrozenUnusedTrained: def(5009, 'warning', (name: string, stage: string) => `component \`${name}\` is trained in stage \`${stage}\` but no loss gradient reaches it`),
  HandOffModelMissing: def(5010, 'error', (name: string, from: string, what = 'component') => `${what} \`${name}\` trained in \`${from}\` does not exist in this stage's model`),
  MixtureShares: def(5011, 'error', (mixture: string, why: string) => `mixture \`${mixture}\` ${why}`),
  MixtureNested: def(5012, 'error', (source: string, mixture: string) => `\`${source}\` is itself a mixture and cannot be a source of mixture \`${mixture}\`; name its datasets directly`),
  MixtureRatioSum: def(5013, 'error', (mixture: string, sum: string) => `the ratios of mixture \`${mixture}\` add up to ${sum}, not 1`),
  ImagesExceedLength: def(5014, 'error', (stage: string, maxLength: number, dataset: string, images: number, tokens: number) => `stage \`${stage}\`: max_length ${maxLength} cannot hold the ${images} images of a record of \`${dataset}\` (max_images ${images} x ${tokens} image tokens = ${images * tokens})`),
  QuantizedBaseTrained: def(5015, 'error', (stage: string, component: string, adapter: string, quantize: string) => `stage \`${stage}\` trains \`${component}\`, whose weights adapter \`${adapter}\` holds quantized (${quantize}); quantized weights cannot be trained`),
  PrecisionOnCpu: def(5016, 'warning', (precision: string) => `precision ${precision} has no effect on cpu devices: a CPU has no ${precision} mixed precision, so the stage trains in fp32 there`),

  // ---- 6xxx custom components and checkpoints ----
  CustomModuleNotFound: def(6001, 'error', (path: string) => `custom module "${path}" does not exist`),
  CustomClassNotExported: def(6002, 'error', (cls: string, path: string) => `custom module "${path}" does not export \`${cls}\``),
  CustomNotTrusted: def(6003, 'error', (cls: string) => `custom component \`${cls}\` runs code from its module and needs \`trust: true\``),
  CustomNeedsBase: def(6004, 'error', (cls: string) => `custom component \`${cls}\` needs \`base:\` naming the architecture whose shapes it follows`),
  WeightsNotFound: def(6005, 'warning', (dir: string) => `weights directory "${dir}" does not exist; the checkpoint cross-check was skipped`),
  ConfigMismatch: def(6006, 'error', (param: string, declared: string, key: string, actual: string) => `declared ${param} = ${declared} but config.json has ${key} = ${actual}`),
  TensorShapeMismatch: def(6007, 'error', (tensor: string, expected: string, actual: string, file: string) => `tensor "${tensor}" should be ${expected} but ${file} has ${actual}`),
  BadSafetensors: def(6008, 'error', (file: string, why: string) => `cannot read safetensors header of "${file}": ${why}`),
  TensorMissing: def(6009, 'error', (tensor: string, dir: string) => `checkpoint "${dir}" has no tensor "${tensor}"`),
  BadConfigJson: def(6010, 'error', (file: string, why: string) => `cannot read "${file}": ${why}`),
  ShardMissing: def(6011, 'error', (shard: string, index: string) => `"${index}" names shard "${shard}", which does not exist`),
  NoTensorsInWeights: def(6012, 'info', (dir: string) => `weights directory "${dir}" has config.json but no safetensors; tensor shapes were not checked`),
  LayoutDetected: def(6013, 'info', (component: string, dir: string, layout: string) => `\`${component}\` reads checkpoint "${dir}" as ${layout}`),
  AmbiguousLayout: def(6014, 'error', (component: string, dir: string, layouts: string) => `checkpoint "${dir}" holds every tensor of \`${component}\` more than once: as ${layouts}`),
  WeightsNotACheckpoint: def(6015, 'error', (dir: string) => `weights "${dir}" is a file but not a .safetensors file`),
  ImageTokenMismatch: def(6016, 'warning', (key: string, id: number, marker: string, markerId: string, tokenizer: string) => `config.json has ${key} = ${id} but the image marker "${marker}" has ${markerId} in "${tokenizer}"`),
  UnsupportedConfig: def(6017, 'error', (key: string, value: string, what: string) => `config.json has ${key} = ${value}, which pipec does not implement: ${what}`),
  // custom code, read at check time (compiler/check/custom*.ts, code-files.ts)
  CustomPythonNotFound: def(6030, 'error', (path: string) => `python half "${path}" does not exist`),
  CustomPythonNoClass: def(6031, 'error', (cls: string, path: string) => `python half "${path}" does not define \`${cls}\``),
  CustomPythonBadImport: def(6032, 'error', (path: string, why: string) => `python half "${path}": ${why}`),
  CustomPathOutside: def(6033, 'error', (what: string, path: string, why: string) => `${what} "${path}" ${why}`),
  CustomImportOutside: def(6034, 'error', (module: string, file: string, spec: string, why: string) => `custom module "${module}": ${file} imports "${spec}", which ${why}`),
  CustomNeedsModule: def(6035, 'error', (cls: string, command: string) => `custom component \`${cls}\` has no TypeScript half (\`module:\`), which ${command} runs`),
  CustomNeedsPython: def(6036, 'error', (cls: string) => `custom component \`${cls}\` has no PyTorch half (\`python:\`), so the export cannot build its class`),
  CustomHalfMissing: def(6037, 'info', (cls: string, missing: string, what: string) => `custom component \`${cls}\` has no ${missing} half: ${what}`),
  CustomImportMissing: def(6038, 'error', (module: string, file: string, spec: string) => `custom module "${module}": ${file} imports "${spec}", which does not exist`),

  // ---- 7xxx memory ----
  DoesNotFit: def(7001, 'error', (stage: string, need: string, have: string, breakdown: string) => `stage \`${stage}\` needs ${need} per device but each device has ${have} (${breakdown})`),
  TightFit: def(7002, 'warning', (stage: string, need: string, have: string) => `stage \`${stage}\` needs ${need} of ${have} per device; leave room for the framework and fragmentation`),

  // ---- 8xxx run configuration ----
  YamlSyntax: def(8001, 'error', (why: string) => `invalid YAML: ${why}`),
  ConfigSchema: def(8002, 'error', (where: string, why: string) => `run config ${where}: ${why}`),
  BadSetOption: def(8003, 'error', (text: string) => `cannot read --set "${text}"; write --set stage.NAME.FIELD=VALUE`),
  OverrideUnknownStage: def(8004, 'error', (stage: string) => `run config names stage \`${stage}\`, which the program does not declare`),
  YamlAliasLimit: def(8005, 'error', () => 'run config expands too many YAML aliases (an alias bomb?)'),
  ConfigNotFound: def(8006, 'error', (path: string) => `run config "${path}" does not exist`),
  // ---- 9xxx runtime (data, tokenizer, backends, training, checkpoints) ----
  DataFileMissing: def(9001, 'error', (file: string) => `data file "${file}" does not exist`),
  DataBadJson: def(9002, 'error', (file: string, why: string) => `"${file}" is not valid JSON: ${why}`),
  DataBadRecord: def(9003, 'error', (index: number, why: string) => `record ${index}: ${why}`),
  DataImageMissing: def(9004, 'error', (index: number, image: string) => `record ${index}: image "${image}" does not exist`),
  DataImageCorrupt: def(9005, 'error', (index: number, image: string, why: string) => `record ${index}: image "${image}" cannot be decoded: ${why}`),
  DataNoImageMarker: def(9006, 'error', (index: number, marker: string) => `record ${index}: has an image but no "${marker}" in its first user turn`),
  DataTooLong: def(9007, 'error', (index: number, tokens: number, max: number) => `record ${index}: ${tokens} tokens (image tokens included) exceed max_length ${max}`),
  DataSkipped: def(9008, 'warning', (count: number, file: string, detail: string) => `skipped ${count} bad record${count === 1 ? '' : 's'} of "${file}" (${detail})`),
  TokenizerUnreadable: def(9010, 'error', (file: string, why: string) => `cannot use tokenizer "${file}": ${why}`),
  ChatTemplateFailed: def(9011, 'error', (why: string) => `chat template failed: ${why}`),
  BackendUnavailable: def(9020, 'error', (name: string, why: string) => `backend \`${name}\` is not available here: ${why}`),
  UnknownOp: def(9021, 'error', (op: string) => `the runtime has no implementation of op \`${op}\``),
  NonFiniteLoss: def(9022, 'error', (value: string, stage: string, step: number) => `loss is ${value} at stage \`${stage}\`, step ${step}; the run stopped`),
  NothingToResume: def(9023, 'error', (dir: string) => `--resume: "${dir}" holds no checkpoint to resume from`),
  ResumeMismatch: def(9024, 'error', (why: string) => `--resume: the checkpoint belongs to a different program: ${why}`),
  WeightShapeMismatch: def(9025, 'error', (tensor: string, file: string, actual: string, expected: string) => `tensor "${tensor}" in "${file}" is ${actual}, expected ${expected}`),
  CustomLoadFailed: def(9026, 'error', (module: string, why: string) => `cannot load custom module "${module}": ${why}`),
  CustomNotTrustedAtRun: def(9027, 'error', (module: string, cls: string) => `custom module "${module}" (${cls}) is not trusted by you; pipec will not run it`),
  RunDirInvalid: def(9028, 'error', (dir: string, why: string) => `"${dir}" is not a usable run directory: ${why}`),
  GraphInvalid: def(9029, 'error', (file: string, why: string) => `"${file}" is not a valid pipec graph: ${why}`),
  RunDirLocked: def(9030, 'error', (dir: string, holder: string) => `run folder "${dir}" is in use by another pipec run (${holder})`),
  RunDirHasRun: def(9031, 'error', (dir: string, what: string) => `"${dir}" already holds a run of this program (${what})`),
  RunDirOtherProgram: def(9032, 'error', (dir: string, theirs: string, ours: string) => `"${dir}" holds the run of a different program (graph ${theirs}; this program is graph ${ours})`),
  RunDirNotEmpty: def(9033, 'error', (dir: string, entries: string) => `"${dir}" is not empty and is not a pipec run folder (it holds ${entries})`),
  RunPathIsLink: def(9034, 'error', (file: string, kind: string) => `"${file}" is a ${kind}; pipec never writes a run's files through a link`),
  CheckpointSkipped: def(9035, 'warning', (name: string, why: string) => `checkpoint "${name}" cannot be resumed from: ${why}`),
  NoIntactCheckpoint: def(9036, 'error', (dir: string, why: string) => `--resume: no checkpoint in "${dir}" can be resumed from (${why})`),
  RunLockLost: def(9037, 'error', (dir: string, holder: string) => `the lock on run folder "${dir}" is no longer this run's (${holder}); the run stops before writing`),
  LatestInvalid: def(9038, 'warning', (why: string) => `checkpoints/latest.json ${why}; the newest intact checkpoint is used instead`),
  DataPathOutside: def(9050, 'error', (index: number, image: string, why: string) => `record ${index}: image "${image}" ${why}; it was not opened`),
  DataNoLabels: def(9051, 'error', (index: number, why: string) => `record ${index}: no token is trained: ${why}`),
  BatchNoLabels: def(9052, 'error', (dataset: string, records: string) => `a batch of dataset "${dataset}" (records ${records}) has no trained token`),
  TokenOutOfVocab: def(9053, 'error', (what: string, id: number, vocab: number) => `${what}: token id ${id} is outside the llm's vocab of ${vocab}`),
  PreflightFailed: def(9054, 'error', (detail: string) => `data pre-flight failed (${detail}); no stage was started`),
  TooFewRecords: def(9055, 'error', (dataset: string, usable: number, stage: string, batch: number) => `dataset "${dataset}" has ${usable} usable record${usable === 1 ? '' : 's'}, fewer than one batch of ${batch} for stage \`${stage}\``),
  BadRoles: def(9056, 'error', (dataset: string, why: string) => `dataset "${dataset}": \`roles\` ${why}`),
  EvalBadArgument: def(9070, 'error', (why: string) => `pipec eval: ${why}`),
  // custom code at run time: the trust decision and its enforcement before import (runtime/trust.ts, runtime/custom.ts)
  CustomCodeChanged: def(9100, 'error', (module: string, recorded: string, now: string) => `custom module "${module}" changed since the graph was compiled (graph ${recorded}, files now ${now}); pipec will not run it`),
  CustomPathOutsideAtRun: def(9101, 'error', (module: string, why: string) => `custom module "${module}" ${why}; pipec will not run it`),
  CustomNoHash: def(9102, 'error', (module: string) => `the graph records no content hash for custom module "${module}"; pipec will not run it`),
  CustomNoModule: def(9103, 'error', (cls: string) => `custom component \`${cls}\` has no TypeScript half (\`module:\`); pipec's runtime cannot run it`),
  TrustStoreUnusable: def(9104, 'error', (dir: string, why: string) => `cannot use the trust records in "${dir}": ${why}`),
  PythonCodeChanged: def(9105, 'error', (file: string, recorded: string, now: string) => `python half "${file}" changed since the graph was compiled (graph ${recorded}, files now ${now}); the export would carry other code than was checked`),
  PythonCodeChangedAtRun: def(9106, 'error', (file: string, why: string) => `python half "${file}" ${why}; the run's checkpoints carry the class's package beside its weights and would carry other code than was checked`),
  // LoRA adapters at run time (runtime/ops/lora.ts, runtime/train/adapters.ts) and `pipec merge`
  AdapterInvalid: def(9110, 'error', (adapter: string, why: string) => `adapter \`${adapter}\` does not fit its component: ${why}`),
  MergeBadArgument: def(9111, 'error', (why: string) => `pipec merge: ${why}`),
  // `pipec export RUN --target hf` (runtime/export/hf*.ts)
  HfNotLlava: def(9080, 'error', (model: string, why: string) => `model \`${model}\` cannot be written as a transformers LLaVA: ${why}`),
  HfNotExpressible: def(9081, 'error', (component: string, why: string) => `component \`${component}\` has no equivalent in transformers' LLaVA: ${why}`),
  HfNoImageToken: def(9082, 'error', (marker: string, why: string) => `the exported tokenizer needs "${marker}" as one token of its own: ${why}`),
  HfImageTokenCount: def(9083, 'error', (processor: number, model: number) => `transformers' LLaVA processor would expand the image marker into ${processor} tokens, but the model takes ${model} image features`),
  HfOutputExists: def(9084, 'error', (dir: string) => `"${dir}" exists and is not a folder that \`pipec export --target hf\` wrote; nothing was written`),
  DataImageMarkers: def(9090, 'error', (index: number, images: number, marker: string, markers: string) => `record ${index}: has ${images} images but ${markers} "${marker}" marker${markers === '1' ? '' : 's'}`),
  DataTooManyImages: def(9091, 'error', (index: number, images: number, max: number) => `record ${index}: has ${images} images, more than the dataset's max_images ${max}`),
  MixtureSourceEmpty: def(9092, 'error', (mixture: string, source: string, stage: string) => `mixture "${mixture}" of stage \`${stage}\` draws from "${source}", which has no usable record`),
  DataChanged: def(9093, 'error', (file: string, when: string) => `"${file}" changed ${when}`),
  DataWorkerFailed: def(9094, 'error', (why: string) => `the image decoding workers failed: ${why}`),
  PrepareUnsupportedData: def(9095, 'error', (stage: string, why: string) => `pipec prepare: the data of stage \`${stage}\` cannot be written for the exported trainer: ${why}`),
} as const;

export type MessageKey = keyof typeof M;
