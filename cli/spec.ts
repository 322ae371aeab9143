// What pipec's commands are and which options each takes: the one table that the argument parser
// (args.ts) checks a command line against and that the help (help.ts) is printed from, so that the
// help cannot list an option the parser refuses, or miss one it accepts.

export interface OptionSpec {
  /** the long name, without `--` */
  name: string;
  short?: string;
  /** the value's placeholder (`DIR`); absent for a switch */
  value?: string;
  /** the values allowed, checked before the command runs */
  choices?: readonly string[];
  meaning: string;
  /** shown as `(default: ...)` */
  default?: string;
  /** several occurrences collect into a list */
  multiple?: boolean;
}

export interface CommandSpec {
  name: string;
  /** one line, for the command list */
  summary: string;
  /** synopsis lines, without the leading `pipec ` */
  usage: string[];
  /** what it does, in a few lines (the first paragraph of its help) */
  about: string;
  options: OptionSpec[];
  /** it compiles a program: takes --config, --set, --format and -v */
  program: boolean;
  examples: string[];
}

// As runtime/backend/backends.ts's BACKEND_NAMES and runtime/export/commands.ts's EXPORT_TARGETS, not
// imported from there: the help and the usage checks must not load the runtime.
export const BACKEND_CHOICES = ['auto', 'tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'] as const;
export const EXPORT_TARGETS = ['torch', 'hf'] as const;

const backend: OptionSpec = {
  name: 'backend', value: 'NAME', choices: BACKEND_CHOICES, default: 'auto',
  meaning: 'the TensorFlow.js backend (`pipec backends` lists those that load here); auto uses webgpu only on a hardware adapter',
};

/** run, generate, eval: the person running pipec lets the program's custom modules run (runtime/trust.ts). */
const TRUST: OptionSpec = {
  name: 'trust', meaning: "run the program's custom modules this once (they never run otherwise, unless `pipec trust` recorded them)",
};

/** Options of every command that compiles a program. */
export const PROGRAM_OPTIONS: OptionSpec[] = [
  { name: 'config', value: 'RUN.yaml', multiple: true, meaning: 'override stage fields and paths from a run config (schema/run-config.schema.json); repeatable' },
  { name: 'set', value: 'stage.NAME.FIELD=VALUE', multiple: true, meaning: 'one override, e.g. stage.align.optimizer.lr=2e-4; repeatable' },
  { name: 'format', value: 'text|json', choices: ['text', 'json'], default: 'text', meaning: 'diagnostics as text or as JSON with ranges' },
  { name: 'verbose', short: 'v', meaning: 'also print notes (severity info)' },
];

/** Options every command takes. */
export const COMMON_OPTIONS: OptionSpec[] = [
  { name: 'no-color', meaning: 'plain text (colour is used only on a terminal and without NO_COLOR)' },
  { name: 'help', short: 'h', meaning: 'this help' },
];

/** Options of `pipec` itself (with no command). */
export const TOP_OPTIONS: OptionSpec[] = [
  { name: 'help', short: 'h', meaning: 'this help; `pipec help COMMAND` or `pipec COMMAND --help` for a command' },
  { name: 'version', short: 'V', meaning: "pipec's version" },
];

export const COMMANDS: CommandSpec[] = [
  {
    name: 'check', summary: 'report every problem in .pipe files', program: true,
    usage: ['check FILE.pipe... [--data]'],
    about: 'Type-checks each program (shapes, weights, stages, data declarations) and reports every problem with\nfile:line:col, a PIPE code and a hint. Exit 0 clean (warnings allowed), 1 errors.',
    options: [{ name: 'data', meaning: "also read every record of every stage's data as training will (the data pre-flight): tokens-per-record histograms, failing records located" }],
    examples: ['pipec check pipelines/*.pipe', 'pipec check --data pipelines/quickstart.pipe --format json'],
  },
  {
    name: 'compile', summary: 'lower a program to the execution-graph IR (JSON)', program: true,
    usage: ['compile FILE.pipe -o OUT.json'],
    about: 'Writes the execution graph (schema/graph.schema.json) that `pipec run` and `pipec eval` also take.\nNothing is written when the program has errors (exit 1).',
    options: [{ name: 'output', short: 'o', value: 'OUT.json', meaning: 'where to write the graph, atomically; its folder must exist (required)' }],
    examples: ['pipec compile pipelines/quickstart.pipe -o quickstart.json'],
  },
  {
    name: 'graph', summary: 'print the graph with the shape at every edge', program: true,
    usage: ['graph FILE.pipe [--dot]'],
    about: 'Prints each model as components and edges, with the tensor shape on every edge.',
    options: [{ name: 'dot', meaning: 'Graphviz (dot) instead of text' }],
    examples: ['pipec graph pipelines/tanuki-8x8b-vision.pipe', 'pipec graph pipelines/quickstart.pipe --dot | dot -Tsvg > q.svg'],
  },
  {
    name: 'estimate', summary: 'parameters and memory per device for every stage', program: true,
    usage: ['estimate FILE.pipe'],
    about: "Per stage: each component's parameters and activations, and per device the weights, gradients,\noptimizer state and activations, against the device's memory when the stage names it.",
    options: [],
    examples: ['pipec estimate pipelines/tanuki-8x8b-vision.pipe', 'pipec estimate pipelines/quickstart.pipe --format json'],
  },
  {
    name: 'fmt', summary: 'format .pipe files in place', program: false,
    usage: ['fmt [--check] FILE.pipe...'],
    about: 'Rewrites each file that is not formatted (atomically) and names it. Exit 1 when a file cannot be\nparsed, or with --check when one is not formatted.',
    options: [{ name: 'check', meaning: 'write nothing; list the files that are not formatted (exit 1 if any)' }],
    examples: ['pipec fmt pipelines/*.pipe', 'pipec fmt --check pipelines/*.pipe'],
  },
  {
    name: 'lsp', summary: 'the language server (editors start it)', program: false,
    usage: ['lsp --stdio'],
    about: 'A Language Server Protocol server on standard input and output (also the pipec-lsp command).',
    options: [{ name: 'stdio', meaning: 'talk LSP over standard input and output' }],
    examples: ['pipec lsp --stdio'],
  },
  {
    name: 'run', summary: 'train a program, stage by stage, into a run directory', program: true,
    usage: ['run FILE.pipe|GRAPH.json [--out DIR] [--backend NAME] [--resume | --overwrite]'],
    about: 'Trains every stage in order, writing metrics, checkpoints and the final weights to the run directory\n(docs/runtime.md). A folder that holds a run is refused unless --resume or --overwrite says what to do.',
    options: [
      { name: 'out', value: 'DIR', default: "runs/NAME, NAME from the program's file name", meaning: 'the run directory' },
      backend,
      { name: 'resume', meaning: "continue from the run directory's newest intact checkpoint" },
      { name: 'overwrite', meaning: "start again in a folder that holds a run (deletes that run's files, no others)" },
      TRUST,
      { name: 'stop-after', value: 'N', meaning: 'stop, as if killed, after N optimizer steps in all (for tests and comparisons; --resume continues from the last checkpoint)' },
    ],
    examples: ['pipec run pipelines/quickstart.pipe', 'pipec run prog.pipe --out runs/exp1 --backend wasm --set stage.align.steps=100', 'pipec run prog.pipe --out runs/exp1 --resume'],
  },
  {
    name: 'generate', summary: 'generate text from a finished run', program: false,
    usage: ['generate RUN_DIR --prompt TEXT [--image FILE.png]'],
    about: "Loads the run's final weights, tokenizer and chat template and answers one prompt (about one image).\nGreedy unless --temperature is above 0.",
    options: [
      { name: 'prompt', value: 'TEXT', meaning: 'the user turn' },
      { name: 'image', value: 'FILE', meaning: 'the image the prompt is about (PNG or JPEG)' },
      backend,
      { name: 'max-tokens', value: 'N', default: '32', meaning: 'at most N new tokens' },
      { name: 'temperature', value: 'T', default: '0, greedy', meaning: 'sampling temperature' },
      { name: 'top-p', value: 'P', default: '1', meaning: 'nucleus sampling: the smallest set of tokens whose probability reaches P' },
      { name: 'seed', value: 'S', default: '0', meaning: "the sampler's seed" },
      TRUST,
    ],
    examples: ['pipec generate runs/quickstart --image shape.png --prompt "what colour is the shape ?"', 'pipec generate runs/exp1 --prompt "describe it" --temperature 0.7 --top-p 0.9 --seed 1'],
  },
  {
    name: 'eval', summary: "loss and accuracy of a program's weights or a run on a dataset, no training", program: true,
    usage: ['eval FILE.pipe|GRAPH.json|RUN_DIR [--stage S] [--data DATASET] [-o RESULT.json] [--records]'],
    about: "The causal-LM loss and, where the data has questions, the exact-match accuracy, through the same data\npipeline as training. A program is evaluated with its declared weights, a run with its final checkpoint.",
    options: [
      { name: 'stage', value: 'S', default: 'the last stage', meaning: 'the stage whose model, template, batch and max_length are used' },
      { name: 'data', value: 'DATASET', default: "the stage's dataset", meaning: 'the dataset to evaluate on' },
      backend,
      { name: 'output', short: 'o', value: 'RESULT.json', meaning: 'also write the result as JSON' },
      { name: 'records', meaning: 'per record: token ids, labels, loss, last-position logits and the answer (in the -o file)' },
      TRUST,
    ],
    examples: ['pipec eval runs/quickstart -o result.json', 'pipec eval pipelines/quickstart.pipe --stage pretrain --data captions'],
  },
  {
    name: 'backends', summary: 'which TensorFlow.js backends load here, and which auto picks', program: false,
    usage: ['backends'],
    about: 'Tries each backend and prints `yes` or `no` with the reason, then the one --backend auto picks.',
    options: [],
    examples: ['pipec backends'],
  },
  {
    name: 'export', summary: 'a PyTorch program from a .pipe file, or a run as a transformers folder', program: true,
    usage: ['export FILE.pipe --target torch -o DIR [--custom-as-base]', 'export RUN_DIR --target hf -o DIR [--max-shard-size SIZE] [--custom-as-base]'],
    about: "--target torch writes the program's training as PyTorch (model.py, train.py, launch/); --target hf a\nfinished run as a transformers LLaVA folder (weights, config, tokenizer, processor). docs/export.md.",
    options: [
      { name: 'target', value: 'torch|hf', choices: EXPORT_TARGETS, meaning: 'what to write (required)' },
      { name: 'output', short: 'o', value: 'DIR', meaning: 'the folder to write (required)' },
      { name: 'custom-as-base', meaning: 'write a custom component as its base op (which computes differently wherever the class does)' },
      { name: 'max-shard-size', value: 'SIZE', default: '5GB', meaning: 'hf: the most tensor data in one safetensors file, as save_pretrained (e.g. 500MB, 2GiB)' },
    ],
    examples: ['pipec export pipelines/quickstart.pipe --target torch -o out/quickstart', 'pipec export runs/quickstart --target hf -o out/quickstart-hf'],
  },
  {
    name: 'prepare', summary: "a program's training micro-batches as shards for the exported PyTorch program", program: true,
    usage: ['prepare FILE.pipe [--stage S] -o DIR [--init] [--world-size N]'],
    about: "Runs pipec's own data pipeline and writes each stage's micro-batches, in pipec's order, as shards that\nthe program from `pipec export --target torch` trains on.",
    options: [
      { name: 'output', short: 'o', value: 'DIR', meaning: 'the folder to write (required)' },
      { name: 'stage', value: 'S', default: 'every stage, each in DIR/STAGE', meaning: 'only this stage, into DIR' },
      { name: 'init', meaning: "also write the stage's fresh (seeded) initial weights, so both programs start from the same ones" },
      { name: 'world-size', value: 'N', default: '1', meaning: 'the micro-batches for N torchrun processes' },
    ],
    examples: ['pipec prepare pipelines/quickstart.pipe -o out/quickstart/data', 'pipec prepare pipelines/quickstart.pipe --stage pretrain -o out/data/pretrain --init'],
  },
  {
    name: 'merge', summary: "fold a run's LoRA adapters into its weights, as transformers folders", program: false,
    usage: ['merge RUN_DIR [--checkpoint NAME] --out DIR'],
    about: "Folds each LoRA adapter of a run's checkpoint into its component, W + (alpha/r) B A, and writes every\ncomponent to DIR/<component>/ in its Hugging Face layout (DIR/lm loads with LlamaForCausalLM).\nExit 0 written, 1 the run or checkpoint cannot be merged (nothing is written), 2 a wrong command line.",
    options: [
      { name: 'checkpoint', value: 'NAME', default: 'the newest (checkpoints/latest.json)', meaning: 'the checkpoint to merge, a folder name under RUN_DIR/checkpoints' },
      { name: 'out', value: 'DIR', meaning: 'the folder to write, new or empty (required)' },
    ],
    examples: ['pipec merge runs/lora --out out/lora-merged', 'pipec merge runs/lora --checkpoint 01-lora-step000200 --out out/step200'],
  },
  {
    name: 'trust', summary: "trust a program's custom modules, as their files are now", program: true,
    usage: ['trust FILE.pipe [--revoke]'],
    about: "Records, for the person running pipec, that the custom modules FILE names may run: keyed by the\nfiles' content hash, so any edit revokes it (docs/language.md §7). run, eval and generate run custom\nmodules only when trusted (or with --trust, this once).",
    options: [{ name: 'revoke', meaning: 'forget the trust recorded for these modules' }],
    examples: ['pipec trust pipelines/tanuki-8x8b-vision.pipe', 'pipec trust pipelines/tanuki-8x8b-vision.pipe --revoke'],
  },
  {
    name: 'help', summary: 'this list, or one command\'s help', program: false,
    usage: ['help [COMMAND]'],
    about: "Prints pipec's commands, or a command's usage, options and examples (as `pipec COMMAND --help`).",
    options: [],
    examples: ['pipec help run'],
  },
];

export function commandSpec(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** Every option a command takes: its own, then the program options where it compiles one, then the common ones. */
export function optionsOf(cmd: CommandSpec): OptionSpec[] {
  return [...cmd.options, ...(cmd.program ? PROGRAM_OPTIONS : []), ...COMMON_OPTIONS];
}
