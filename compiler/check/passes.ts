// The checker's passes, in the one order they run. Each pass reads what the earlier ones built into the
// Program and reports through the Reporter; a pass skips whatever an earlier error left incomplete, so one
// mistake yields one diagnostic rather than a cascade.
//
//   1. load      parse the entry file and its imports (std/..., relative paths)      resolve.ts
//   2. scope     per-file scopes, duplicate declarations                             resolve.ts
//   3. models    bind components to constructors, type parameters, where, shapes    components.ts, instance.ts
//   4. flows     unify shapes along every flow edge, the <image> splice               flows.ts
//   5. custom    custom code: both halves inside the program's folder, the class       custom.ts
//                exported / defined, relative imports resolve; files and content hash
//   6. weights   config.json and safetensors headers against the declarations         checkpoint.ts
//   7. stages    datasets, stage fields, train/freeze, after, lengths                 stages.ts
//   8. data      the files datasets name; the tokenizer's ids against the llm's vocab data-files.ts
//                (and a LLaVA checkpoint's image token against the tokenizer)         checkpoint-llava.ts
//   9. memory    per-device memory per stage; fit against the declared devices        memory.ts
// Lowering (lower/) runs only on a program with no errors.
import type * as A from '../ast/nodes.js';
import { checkCheckpoints } from './checkpoint.js';
import { checkLlavaImageTokens } from './checkpoint-llava.js';
import { checkModels } from './components.js';
import { checkCustomComponents, type CustomNeeds } from './custom.js';
import { checkDataFiles } from './data-files.js';
import { checkFlows } from './flows.js';
import { checkMemory, type StageEstimate } from './memory.js';
import { Reporter, type Host, type Program, type SigInfo } from './program.js';
import { buildSig, loadProgram } from './resolve.js';
import { checkDatasets, checkStages, type StageOverride } from './stages.js';
import type { Range } from '../diagnostics/source.js';
import type { Value } from './values.js';

export const PASSES = ['load', 'scope', 'models', 'flows', 'custom', 'weights', 'stages', 'data', 'memory'] as const;

export interface CheckOptions {
  stageOverrides?: StageOverride[];
  /** paths.weights.COMPONENT -> dir; paths.data.DATASET.PARAM -> value */
  weightOverrides?: Map<string, { dir: string; range: Range }>;
  dataOverrides?: Map<string, Map<string, { value: Value; range: Range }>>;
  /** Skip reading checkpoints and data files from disk (the language server may turn this off while typing). */
  skipWeights?: boolean;
  /** What the command needs of custom components (`run`: the TypeScript half, `export`: the PyTorch half); a missing one is then an error. */
  customNeeds?: CustomNeeds;
}

export interface CheckResult {
  program: Program;
  reporter: Reporter;
  estimates: Map<string, StageEstimate>;
}

export function checkProgram(entryPath: string, entryText: string, host: Host, options: CheckOptions = {}): CheckResult {
  const reporter = new Reporter();
  const { entry, files } = loadProgram(entryPath, entryText, host, reporter);
  const program: Program = { entry, files, sigs: new Map(), models: new Map(), datasets: new Map(), templates: new Map(), stages: [] };
  const fileOf = new Map<A.Decl, (typeof files)[number]>();
  for (const f of files)
    for (const d of f.ast.decls) {
      fileOf.set(d, f);
      if (d.kind === 'Template' && d.name.name && !program.templates.has(d.name.name)) program.templates.set(d.name.name, d);
    }
  const sigOf = (d: A.SignatureDecl): SigInfo => {
    let s = program.sigs.get(d);
    if (!s) {
      s = buildSig(d, fileOf.get(d)!, reporter);
      program.sigs.set(d, s);
    }
    return s;
  };
  // Signatures declared but never used are still type-checked, so a broken stdlib is found at once.
  for (const f of files) for (const d of f.ast.decls) if (d.kind === 'Signature') sigOf(d);

  // As Langium does, meaning is checked only once the syntax is right: recovery keeps parsing to report
  // every syntax error, but a half-parsed declaration would only produce misleading follow-on errors.
  if (reporter.diagnostics.some((d) => d.code.startsWith('PIPE1'))) return { program, reporter, estimates: new Map() };

  checkModels(program, host, reporter, sigOf, options.weightOverrides);
  checkFlows(program, reporter);
  checkCustomComponents(program, host, reporter, options.customNeeds);
  if (!options.skipWeights) checkCheckpoints(program, host, reporter);
  checkDatasets(program, reporter, sigOf, options.dataOverrides ?? new Map());
  checkStages(program, reporter, sigOf, options.stageOverrides ?? []);
  if (!options.skipWeights) checkDataFiles(program, host, reporter);
  if (!options.skipWeights) checkLlavaImageTokens(program, host, reporter); // a LLaVA config's image token vs the tokenizer
  const estimates = checkMemory(program, reporter);
  return { program, reporter, estimates };
}
