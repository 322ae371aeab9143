// pipec: the command-line driver. Every command goes through the compiler service; exit codes are
// 0 clean (warnings allowed), 1 the program has errors, 2 pipec was invoked wrongly.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { StageEstimate } from '../check/memory.js';
import { formatBytes, formatCount } from '../check/values.js';
import { hasErrors, type Diagnostic } from '../diagnostics/diagnostic.js';
import { renderAll, summary } from '../diagnostics/render.js';
import { format } from '../format/format.js';
import type { Graph } from '../ir/graph.js';
import { compile, graphJson, UsageError, type CompileResult } from '../service/service.js';
import { PipeRuntimeError } from '../../runtime/errors.js';
import { layoutsOf, renderDot, renderGraph } from './graph-view.js';

const USAGE = `pipec - compile and run .pipe programs for multimodal models

usage:
  pipec check FILE...             report every problem (exit 0 clean, 1 errors, 2 usage)
  pipec check --data FILE...      also read every record of every stage's data as training will (the
                                  data pre-flight): tokens-per-record histograms, failing records located
  pipec compile FILE -o OUT.json  lower to the execution-graph IR (schema/graph.schema.json)
  pipec graph FILE [--dot]        print the graph with the shape at every edge (Graphviz with --dot)
  pipec estimate FILE             parameters and memory per device for every stage
  pipec fmt [--check] FILE...     format in place (--check: list unformatted files, exit 1)
  pipec lsp --stdio               the language server (editors start it)
  pipec run FILE|GRAPH.json       train, stage by stage, into a run directory (--out, default runs/NAME)
  pipec generate RUN --prompt P   generate from a finished run (--image x.png)
  pipec eval FILE|RUN [--stage S] [--data DATASET] [-o result.json]
                                  loss (and exact-match accuracy) of a program's weights or a finished
                                  run on a dataset, no training; --records: per-record ids and logits
  pipec backends                  which TensorFlow.js backends load here, and which auto picks
  pipec export FILE --target torch -o DIR   a PyTorch program (model.py, train.py, launch/) from the graph
                                  (--custom-as-base: custom components as their base op)
  pipec export RUN --target hf -o DIR       a finished run as a transformers LLaVA folder (weights, config,
                                  tokenizer, processor); --max-shard-size 5GB as save_pretrained
  pipec prepare FILE [--stage S] -o DIR     a stage's micro-batches as shards for it (--init: fresh weights,
                                  --world-size N: for N torchrun processes)

options:
  --format text|json              diagnostics as text (default) or JSON with ranges
  --config RUN.yaml               override stage fields and paths (schema/run-config.schema.json)
  --set stage.NAME.FIELD=VALUE    one override, e.g. --set stage.align.optimizer.lr=2e-4
  --no-color                      plain text
  --backend auto|tensorflow-gpu|webgpu|tensorflow|wasm|cpu   (run, generate, eval; default auto;
                                  webgpu on a software adapter only when named)
  --resume                        run: continue from the run directory's newest intact checkpoint
  --overwrite                     run: start again in a folder that holds a run (deletes that run's files)
  --max-tokens N, --temperature T, --top-p P, --seed S   generate: sampling (default greedy)
  -v, --verbose                   also print notes (severity info)
  -h, --help                      this text
`;

interface Out {
  out: (s: string) => void;
  err: (s: string) => void;
}

export async function main(argv: string[], io: Out = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      // `eval --data DATASET` names a dataset, where `check --data` is a switch
      args: argv[0] === 'eval' ? argv.map((a) => a.replace(/^--data(?==|$)/, '--dataset')) : argv,
      allowPositionals: true,
      options: {
        format: { type: 'string', default: 'text' },
        config: { type: 'string', multiple: true },
        set: { type: 'string', multiple: true },
        output: { type: 'string', short: 'o' },
        dot: { type: 'boolean', default: false },
        'no-color': { type: 'boolean', default: false },
        verbose: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        stdio: { type: 'boolean', default: false },
        check: { type: 'boolean', default: false },
        data: { type: 'boolean', default: false },
        dataset: { type: 'string' },
        records: { type: 'boolean', default: false },
        backend: { type: 'string' },
        out: { type: 'string' },
        resume: { type: 'boolean', default: false },
        overwrite: { type: 'boolean', default: false },
        'stop-after': { type: 'string' },
        image: { type: 'string' },
        prompt: { type: 'string' },
        'max-tokens': { type: 'string' },
        temperature: { type: 'string' },
        'top-p': { type: 'string' },
        seed: { type: 'string' },
        target: { type: 'string' },
        stage: { type: 'string' },
        init: { type: 'boolean', default: false },
        'custom-as-base': { type: 'boolean', default: false },
        'world-size': { type: 'string' },
        'max-shard-size': { type: 'string' },
      },
    });
  } catch (e) {
    io.err(`pipec: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...files] = positionals;
  if (values.help || !command) {
    (values.help ? io.out : io.err)(USAGE);
    return values.help ? 0 : 2;
  }
  if (values.format !== 'text' && values.format !== 'json') {
    io.err(`pipec: --format must be text or json, got ${values.format}\n`);
    return 2;
  }
  verbose = !!values.verbose;
  const color = !values['no-color'] && values.format === 'text' && !!process.stdout.isTTY && !process.env.NO_COLOR;
  const base = { configFiles: values.config ?? [], sets: values.set ?? [] };
  const BACKENDS = ['auto', 'tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'];
  if (values.backend !== undefined && !BACKENDS.includes(values.backend)) {
    io.err(`pipec: --backend must be one of ${BACKENDS.join(', ')}, got ${values.backend}\n`);
    return 2;
  }
  try {
    switch (command) {
      case 'check': {
        if (!files.length) throw new UsageError('check needs at least one .pipe file');
        let failed = false;
        const json: unknown[] = [];
        for (const file of files) {
          const r = compileOrThrow(file, base, values.data);
          failed ||= hasErrors(r.diagnostics);
          const entry: { file: string; diagnostics: Diagnostic[]; data?: unknown } = { file, diagnostics: r.diagnostics };
          if (values.format !== 'json') report(r, io, color);
          // --data: the data pre-flight, once the program itself is sound (runtime/data/preflight-report.ts)
          if (values.data && r.graph && !hasErrors(r.diagnostics)) {
            const pf = await import('../../runtime/data/preflight-report.js');
            const d = pf.preflightCommand(r.graph, path.dirname(path.resolve(file)), { format: values.format as 'text' | 'json' }, io);
            failed ||= d.failed;
            entry.data = d.json;
          }
          if (values.format === 'json') json.push(entry);
        }
        if (values.format === 'json') io.out(`${JSON.stringify(files.length === 1 ? json[0] : json, null, 2)}\n`);
        return failed ? 1 : 0;
      }
      case 'compile': {
        const file = single(files, 'compile');
        if (!values.output) throw new UsageError('compile needs -o OUT.json');
        const r = compileOrThrow(file, base, true);
        if (!r.graph) return fail(r, io, color, values.format);
        report(r, io, color);
        const text = graphJson(r.graph);
        writeAtomically(values.output, text);
        io.err(`wrote ${values.output} (${r.graph.models.length} model${r.graph.models.length === 1 ? '' : 's'}, ${r.graph.stages.length} stage${r.graph.stages.length === 1 ? '' : 's'})\n`);
        return 0;
      }
      case 'graph': {
        const r = compileOrThrow(single(files, 'graph'), base, true);
        if (!r.graph) return fail(r, io, color, values.format);
        report(r, io, color);
        io.out(values.dot ? renderDot(r.graph) : renderGraph(r.graph, layoutsOf(r.check)));
        return 0;
      }
      case 'estimate': {
        const r = compileOrThrow(single(files, 'estimate'), base, false);
        report(r, io, color);
        const est = r.check?.estimates ?? new Map<string, StageEstimate>();
        if (values.format === 'json') io.out(`${JSON.stringify({ diagnostics: r.diagnostics, stages: [...est.values()] }, null, 2)}\n`);
        else io.out(renderEstimates([...est.values()]));
        return hasErrors(r.diagnostics) ? 1 : 0;
      }
      case 'fmt': {
        // `fmt FILE...` rewrites what is not formatted (atomically) and names each file it rewrote;
        // `fmt --check FILE...` writes nothing and names each file that is not formatted (exit 1).
        if (!files.length) throw new UsageError('fmt needs at least one .pipe file');
        for (const file of files) {
          if (!fs.existsSync(file)) throw new UsageError(`cannot read ${file}: no such file`);
          if (fs.statSync(file).isDirectory()) throw new UsageError(`${file} is a directory; give a .pipe file`);
        }
        let bad = 0;
        for (const file of files) {
          const r = format(fs.readFileSync(file, 'utf8'));
          if ('error' in r) {
            io.err(`${file}:${r.error}\n`);
            bad++;
          } else if (r.changed) {
            if (values.check) bad++;
            else writeAtomically(file, r.text);
            io.out(`${file}\n`);
          }
        }
        return bad ? 1 : 0;
      }
      case 'lsp': {
        // The language server answers on stdio until the editor sends `exit` (which ends the process).
        const { startServer } = await import('../lsp/server.js');
        startServer();
        return await new Promise<number>(() => undefined);
      }
      case 'run': {
        const file = single(files, 'run');
        if (values.resume && values.overwrite) throw new UsageError('--resume continues the run in the folder and --overwrite deletes it: give one of them');
        const rt = await import('../../runtime/cli/commands.js');
        let graph: Graph;
        if (file.endsWith('.json')) {
          if (!fs.existsSync(file)) throw new UsageError(`cannot read ${file}: no such file`);
          graph = rt.loadGraphFile(file);
        } else {
          const r = compileOrThrow(file, base, true);
          if (hasErrors(r.diagnostics) || !r.graph) return fail(r, io, color, values.format);
          report(r, io, color);
          graph = r.graph;
        }
        // Paths in a program (data, weights) are relative to its .pipe file; a graph names that file.
        const baseDir = file.endsWith('.json') && fs.statSync(graph.source, { throwIfNoEntry: false })?.isFile() ? path.dirname(path.resolve(graph.source)) : path.dirname(path.resolve(file));
        return await rt.runCommand(graph, baseDir, {
          file, out: values.out, backend: values.backend, resume: values.resume, overwrite: values.overwrite, stopAfter: intOption(values['stop-after'], '--stop-after'),
        }, io);
      }
      case 'generate': {
        const dir = single(files, 'generate');
        if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`${dir} is not a run directory`);
        if (values.image && !fs.existsSync(values.image)) throw new UsageError(`cannot read ${values.image}: no such file`);
        const rt = await import('../../runtime/cli/commands.js');
        return await rt.generateCommand(dir, {
          image: values.image, prompt: values.prompt, backend: values.backend, maxTokens: intOption(values['max-tokens'], '--max-tokens'),
          temperature: numOption(values.temperature, '--temperature'), topP: numOption(values['top-p'], '--top-p'), seed: intOption(values.seed, '--seed'),
        }, io);
      }
      case 'export':
      case 'prepare': {
        const file = single(files, command);
        if (!values.output) throw new UsageError(`${command} needs -o DIR`);
        if (command === 'export' && !values.target) throw new UsageError('export needs --target torch (a program) or --target hf (a run)');
        if (command === 'export' && values.target === 'hf') {
          // from a finished run, not a program: its graph, final checkpoint and tokenizer
          if (!fs.existsSync(file) || !fs.statSync(file).isDirectory()) throw new UsageError(`export --target hf takes a run directory (pipec run's --out), and ${file} is not one`);
          let maxShardBytes: number | undefined;
          if (values['max-shard-size'] !== undefined) {
            const { parseSize } = await import('../../runtime/weights/shards.js');
            maxShardBytes = parseSize(values['max-shard-size']);
            if (maxShardBytes === undefined) throw new UsageError(`--max-shard-size needs a size such as 5GB, 500MB or 2GiB, got "${values['max-shard-size']}"`);
          }
          const ex = await import('../../runtime/export/commands.js');
          return ex.exportHfCommand(file, values.output, io, { maxShardBytes, customAsBase: values['custom-as-base'] });
        }
        const r = compileOrThrow(file, base, true);
        if (hasErrors(r.diagnostics) || !r.graph) return fail(r, io, color, values.format);
        report(r, io, color);
        const ex = await import('../../runtime/export/commands.js');
        if (command === 'export') return ex.exportCommand(r.graph, values.output, values.target!, io, { customAsBase: values['custom-as-base'] });
        return ex.prepareCommand(r.graph, path.dirname(path.resolve(file)), { out: values.output, stage: values.stage, init: values.init, worldSize: intOption(values['world-size'], '--world-size') }, io);
      }
      case 'eval': {
        const target = single(files, 'eval');
        if (!fs.existsSync(target)) throw new UsageError(`cannot read ${target}: no such file or run directory`);
        if (values.output && !fs.existsSync(path.dirname(path.resolve(values.output)))) throw new UsageError(`cannot write ${values.output}: its folder does not exist`);
        const ev = await import('../../runtime/eval/command.js');
        const rt = await import('../../runtime/cli/commands.js');
        const o = { stage: values.stage, data: values.dataset, backend: rt.backendChoice(values.backend), output: values.output, records: values.records };
        if (fs.statSync(target).isDirectory()) return await ev.evalRun(target, o, io);
        const r = target.endsWith('.json') ? undefined : compileOrThrow(target, base, true);
        if (r && (hasErrors(r.diagnostics) || !r.graph)) return fail(r, io, color, values.format);
        if (r) report(r, io, color);
        const graph = r?.graph ?? rt.loadGraphFile(target);
        const baseDir = r ? path.dirname(path.resolve(target)) : path.dirname(path.resolve(fs.existsSync(graph.source) ? graph.source : target));
        return await ev.evalProgram(graph, baseDir, target, o, io);
      }
      case 'backends': {
        const rt = await import('../../runtime/cli/commands.js');
        return await rt.backendsCommand(io);
      }
      default:
        throw new UsageError(`unknown command \`${command}\``);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`pipec: ${e.message}\n`);
      return 2;
    }
    if (e instanceof PipeRuntimeError) {
      io.err(`${e.render()}\n`);
      return 1;
    }
    if ((e as Error).name === 'CheckpointError') {
      io.err(`error PIPE6008: ${(e as Error).message}\n`);
      return 1;
    }
    io.err(`pipec: internal error: ${(e as Error).message}\n${process.env.PIPEC_DEBUG ? `${(e as Error).stack}\n` : 'set PIPEC_DEBUG=1 for details, and please report it\n'}`);
    return 3;
  }
}

function intOption(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} needs a whole number, got "${v}"`);
  return Number(v);
}

function numOption(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isFinite(Number(v)) || v.trim() === '') throw new UsageError(`${name} needs a number, got "${v}"`);
  return Number(v);
}

function single(files: string[], cmd: string): string {
  if (files.length !== 1) throw new UsageError(`${cmd} takes exactly one .pipe file`);
  return files[0];
}

function compileOrThrow(file: string, base: { configFiles: string[]; sets: string[] }, lower: boolean): CompileResult {
  if (!fs.existsSync(file)) throw new UsageError(`cannot read ${file}: no such file`);
  if (fs.statSync(file).isDirectory()) throw new UsageError(`${file} is a directory; give a .pipe file`);
  return compile({ file, ...base, lower });
}

let verbose = false;

function report(r: CompileResult, io: Out, color: boolean): void {
  const shown = verbose ? r.diagnostics : r.diagnostics.filter((d) => d.severity !== 'info');
  if (!shown.length) return;
  io.err(`${renderAll(shown, r.sources, { style: 'cli', color })}\n\n${summary(shown)}\n`);
}

function fail(r: CompileResult, io: Out, color: boolean, format: string | undefined): number {
  if (format === 'json') io.out(`${JSON.stringify({ diagnostics: r.diagnostics }, null, 2)}\n`);
  else report(r, io, color);
  return 1;
}

function writeAtomically(file: string, text: string): void {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new UsageError(`cannot write ${file}: folder ${dir} does not exist`);
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

export function renderEstimates(stages: StageEstimate[]): string {
  const lines: string[] = [];
  for (const s of stages) {
    const dev = `${s.nodes > 1 ? `${s.nodes} nodes x ${s.devices / s.nodes}` : s.devices} x ${s.deviceKind ?? 'device'}${s.deviceMemory ? ` (${formatBytes(s.deviceMemory)})` : ''}`;
    lines.push(`stage ${s.stage}: ${dev}, ${s.precision}, sharding ${s.sharding}, micro-batch ${s.batch}, max_length ${s.maxLength}`);
    lines.push(`  ${'component'.padEnd(14)}${'role'.padEnd(11)}${'params'.padStart(12)}  ${'state'.padEnd(9)}${'activations'.padStart(12)}`);
    for (const c of s.components) {
      lines.push(`  ${c.name.padEnd(14)}${c.role.padEnd(11)}${formatCount(c.params).padStart(12)}  ${(c.trainable ? 'trained' : 'frozen').padEnd(9)}${(c.storesActivations ? formatBytes(c.activationBytes) : '-').padStart(12)}`);
    }
    lines.push(`  parameters: ${formatCount(s.totalParams)} total (${s.totalParams}), ${formatCount(s.trainableParams)} trained`);
    const p = s.perDevice;
    lines.push(`  per device: weights ${formatBytes(p.weights)}, gradients ${formatBytes(p.gradients)}, optimizer ${formatBytes(p.optimizer)}, activations ${formatBytes(p.activations)}`);
    const verdict = s.fits === undefined ? '' : s.fits ? ` of ${formatBytes(s.deviceMemory!)}: fits` : ` of ${formatBytes(s.deviceMemory!)}: DOES NOT FIT`;
    lines.push(`  total per device: ${formatBytes(p.total)}${verdict}`);
    lines.push('');
  }
  return `${lines.join("\n")}\n`;
}

export type { Graph, Diagnostic };
