// pipec: the command-line driver. Every command goes through the compiler service; exit codes are
// 0 clean (warnings allowed), 1 the program has errors, 2 pipec was invoked wrongly (one line saying
// what, and where the usage is), 3 an internal error. The commands and their options: spec.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StageEstimate } from '../compiler/check/memory.js';
import { formatBytes, formatCount } from '../compiler/check/values.js';
import { hasErrors, type Diagnostic } from '../compiler/diagnostics/diagnostic.js';
import { renderAll, summary } from '../compiler/diagnostics/render.js';
import { format } from '../compiler/format/format.js';
import type { Graph } from '../compiler/ir/graph.js';
import { compile, graphJson, UsageError, type CompileResult } from '../compiler/service/service.js';
import { PipeRuntimeError } from '../runtime/errors.js';
import { CommandLineError, parseCommandLine, unknownCommand, type CommandLine, type OptionValues } from './args.js';
import { layoutsOf, renderDot, renderGraph } from './graph-view.js';
import { commandHelp, globalHelp, version } from './help.js';
import { commandSpec } from './spec.js';

interface Out {
  out: (s: string) => void;
  err: (s: string) => void;
}

export async function main(argv: string[], io: Out = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }): Promise<number> {
  let line: CommandLine;
  try {
    line = parseCommandLine(argv);
  } catch (e) {
    if (e instanceof CommandLineError) return usageError(e, io, e.command);
    throw e;
  }
  const values = typed(line.values);
  const files = line.positionals;
  if (!line.command) {
    if (values.version) io.out(`pipec ${version()}\n`);
    else (values.help ? io.out : io.err)(globalHelp()); // `pipec` alone is a usage error: the list on stderr, exit 2
    return values.version || values.help ? 0 : 2;
  }
  const command = line.command.name;
  if (values.help) {
    io.out(commandHelp(line.command));
    return 0;
  }
  if (command === 'help') {
    if (files.length > 1) return usageError(new UsageError('help takes one command: pipec help COMMAND'), io);
    if (!files.length) {
      io.out(globalHelp());
      return 0;
    }
    const topic = commandSpec(files[0]);
    if (!topic) return usageError(new UsageError(unknownCommand(files[0])), io);
    io.out(commandHelp(topic));
    return 0;
  }
  verbose = !!values.verbose;
  const color = !values['no-color'] && values.format === 'text' && !!process.stdout.isTTY && !process.env.NO_COLOR;
  const base = { configFiles: values.config ?? [], sets: values.set ?? [] };
  try {
    if (values.trust || command === 'run' || command === 'eval' || command === 'generate') {
      // the trust decision for custom modules (runtime/trust.ts) knows what the person running pipec said
      const { setSessionTrust } = await import('../runtime/trust.js');
      setSessionTrust({ trust: values.trust, program: files[0]?.endsWith('.pipe') ? files[0] : undefined });
    }
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
            const pf = await import('../runtime/data/preflight-report.js');
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
        const { startServer } = await import('../compiler/lsp/server.js');
        startServer();
        return await new Promise<number>(() => undefined);
      }
      case 'run': {
        const file = single(files, 'run');
        if (values.resume && values.overwrite) throw new UsageError('--resume continues the run in the folder and --overwrite deletes it: give one of them');
        const rt = await import('./runtime-commands.js');
        let graph: Graph;
        if (file.endsWith('.json')) {
          if (!fs.existsSync(file)) throw new UsageError(`cannot read ${file}: no such file`);
          graph = rt.loadGraphFile(file);
        } else {
          const r = compileOrThrow(file, base, true, 'run');
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
        const rt = await import('./runtime-commands.js');
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
            const { parseSize } = await import('../runtime/weights/shards.js');
            maxShardBytes = parseSize(values['max-shard-size']);
            if (maxShardBytes === undefined) throw new UsageError(`--max-shard-size needs a size such as 5GB, 500MB or 2GiB, got "${values['max-shard-size']}"`);
          }
          const ex = await import('../runtime/export/commands.js');
          return ex.exportHfCommand(file, values.output, io, { maxShardBytes, customAsBase: values['custom-as-base'] });
        }
        const r = compileOrThrow(file, base, true, command === 'export' && !values['custom-as-base'] ? 'export' : undefined);
        if (hasErrors(r.diagnostics) || !r.graph) return fail(r, io, color, values.format);
        report(r, io, color);
        const ex = await import('../runtime/export/commands.js');
        if (command === 'export') return ex.exportCommand(r.graph, values.output, values.target!, io, { customAsBase: values['custom-as-base'], baseDir: path.dirname(path.resolve(file)) });
        return ex.prepareCommand(r.graph, path.dirname(path.resolve(file)), { out: values.output, stage: values.stage, init: values.init, worldSize: intOption(values['world-size'], '--world-size') }, io);
      }
      case 'eval': {
        const target = single(files, 'eval');
        if (!fs.existsSync(target)) throw new UsageError(`cannot read ${target}: no such file or run directory`);
        if (values.output && !fs.existsSync(path.dirname(path.resolve(values.output)))) throw new UsageError(`cannot write ${values.output}: its folder does not exist`);
        const ev = await import('../runtime/eval/command.js');
        const rt = await import('./runtime-commands.js');
        const o = { stage: values.stage, data: values.dataset, backend: rt.backendChoice(values.backend), output: values.output, records: values.records };
        if (fs.statSync(target).isDirectory()) return await ev.evalRun(target, o, io);
        const r = target.endsWith('.json') ? undefined : compileOrThrow(target, base, true, 'run');
        if (r && (hasErrors(r.diagnostics) || !r.graph)) return fail(r, io, color, values.format);
        if (r) report(r, io, color);
        const graph = r?.graph ?? rt.loadGraphFile(target);
        const baseDir = r ? path.dirname(path.resolve(target)) : path.dirname(path.resolve(fs.existsSync(graph.source) ? graph.source : target));
        return await ev.evalProgram(graph, baseDir, target, o, io);
      }
      case 'merge': {
        if (files.length !== 1) throw new UsageError('merge takes exactly one run directory');
        const dir = files[0];
        if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`merge takes a run directory (pipec run's --out), and ${dir} is not one`);
        if (!values.out) throw new UsageError('merge needs --out DIR');
        const { mergeCommand } = await import('../runtime/train/merge.js');
        return mergeCommand(dir, { checkpoint: values.checkpoint, out: values.out }, io);
      }
      case 'trust': {
        const file = single(files, 'trust');
        const r = compileOrThrow(file, base, true);
        if (hasErrors(r.diagnostics) || !r.graph) return fail(r, io, color, values.format);
        const { trustCommand } = await import('../runtime/trust-command.js');
        return trustCommand(r.graph, file, { revoke: values.revoke }, io);
      }
      case 'backends': {
        const rt = await import('./runtime-commands.js');
        return await rt.backendsCommand(io);
      }
      default:
        throw new Error(`the command table lists \`${command}\` but main does not run it`);
    }
  } catch (e) {
    if (e instanceof UsageError) return usageError(e, io, command);
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

/**
 * A usage error is one line saying what is wrong, then where the usage is: exit 2, no stack trace.
 * The pointer names the command when the command line has a known one.
 */
function usageError(e: UsageError, io: Out, command?: string): number {
  io.err(`pipec: ${e.message}\nsee \`pipec ${command && command !== 'help' ? `${command} ` : ''}--help\`\n`);
  return 2;
}

/** The parsed options with their types; `data` is check's switch or eval's dataset. */
function typed(v: OptionValues) {
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const bool = (k: string) => v[k] === true;
  const list = (k: string) => (Array.isArray(v[k]) ? (v[k] as string[]) : []);
  return {
    help: bool('help'), version: bool('version'), format: str('format') ?? 'text', config: list('config'), set: list('set'), verbose: bool('verbose'), 'no-color': bool('no-color'),
    output: str('output'), dot: bool('dot'), check: bool('check'), data: bool('data'), dataset: str('data'), records: bool('records'), backend: str('backend'),
    out: str('out'), resume: bool('resume'), overwrite: bool('overwrite'), 'stop-after': str('stop-after'),
    image: str('image'), prompt: str('prompt'), 'max-tokens': str('max-tokens'), temperature: str('temperature'), 'top-p': str('top-p'), seed: str('seed'),
    target: str('target'), stage: str('stage'), init: bool('init'), 'custom-as-base': bool('custom-as-base'), 'world-size': str('world-size'), 'max-shard-size': str('max-shard-size'),
    trust: bool('trust'), revoke: bool('revoke'), checkpoint: str('checkpoint'),
  };
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

function compileOrThrow(file: string, base: { configFiles: string[]; sets: string[] }, lower: boolean, customNeeds?: 'run' | 'export'): CompileResult {
  if (!fs.existsSync(file)) throw new UsageError(`cannot read ${file}: no such file`);
  if (fs.statSync(file).isDirectory()) throw new UsageError(`${file} is a directory; give a .pipe file`);
  return compile({ file, ...base, lower, customNeeds });
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
