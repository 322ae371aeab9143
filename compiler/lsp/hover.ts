// Hover: a constructor's signature and the comment above it in the standard library, a component's shapes
// and parameter count, a stage's trainable parameters and memory per device, what a stage field means (the
// checker's STAGE_FIELDS), a parameter's type, default and constraints, a preset's values.
import type * as A from '../ast/nodes.js';
import { exprText } from '../check/instance.js';
import type { StageEstimate } from '../check/memory.js';
import type { CheckResult } from '../check/passes.js';
import { STAGE_FIELDS } from '../check/stages.js';
import { formatBytes, formatCount, show, showDims } from '../check/values.js';
import type { Range } from '../diagnostics/source.js';
import type { NameUse, Sym } from './navigation.js';

export function signatureText(sig: A.SignatureDecl): string {
  const params = sig.params.map((p) => `${p.name.name}: ${exprText(p.type)}${p.default ? ` = ${exprText(p.default)}` : ''}`);
  const shape = sig.input && sig.output ? `\n  : ${exprText(sig.input)} -> ${exprText(sig.output)}` : '';
  const where = sig.where.length ? `\n  where ${sig.where.map(exprText).join(', ')}` : '';
  return `${sig.sigKind} ${sig.name.name}(${params.join(', ')})${shape}${where}`;
}

function estimateText(e: StageEstimate): string {
  const p = e.perDevice;
  const lines = [
    `trainable: ${formatCount(e.trainableParams)} of ${formatCount(e.totalParams)} parameters`,
    `per device (${e.devices} x ${e.deviceKind ?? 'device'}, ${e.precision}, ${e.sharding}): ${formatBytes(p.total)}${e.deviceMemory ? ` of ${formatBytes(e.deviceMemory)}` : ''}`,
    `weights ${formatBytes(p.weights)} · gradients ${formatBytes(p.gradients)} · optimizer ${formatBytes(p.optimizer)} · activations ${formatBytes(p.activations)}`,
  ];
  return lines.join('\n\n');
}

/** The `//` comment lines right above a declaration (the standard library documents each constructor so). */
export function docComment(range: Range, check: CheckResult): string | undefined {
  const source = check.program.files.find((f) => f.source.path === range.file)?.source;
  if (!source) return undefined;
  const lines = source.text.split('\n');
  const doc: string[] = [];
  for (let i = range.start.line - 2; i >= 0 && /^\s*\/\//.test(lines[i]); i--) doc.unshift(lines[i].replace(/^\s*\/\/\s?/, ''));
  return doc.length ? doc.join('\n') : undefined;
}

const code = (text: string) => `\`\`\`pipe\n${text}\n\`\`\``;

/** A stage field: what it means, its type, default and inheritance, from the checker's one table. */
export function stageFieldHover(name: string): string | undefined {
  const f = Object.hasOwn(STAGE_FIELDS, name) ? STAGE_FIELDS[name] : undefined;
  if (!f) return undefined;
  return [`**stage field \`${name}\`**: ${f.meaning}`, `type: ${f.type}`, `default: ${f.default}`, `inherited from \`after\`: ${f.inherited}`].join('\n\n');
}

/** `custom(...)`: built into the checker, declared in no .pipe file (docs/language.md §7). */
const CUSTOM_HOVER = [
  code('custom(class: string, module: path, trust: bool, base: constructor, ...base parameters)'),
  'A component built from your own model class: `module` (a TypeScript or JavaScript file, relative to this file) exports `class`; `trust: true` allows running it; `base` is the standard constructor whose parameters, shapes and tensor names it shares (docs/language.md §7).',
].join('\n\n');

export function nameUseHover(use: NameUse, check: CheckResult): string | undefined {
  switch (use.kind) {
    case 'stageField':
      return stageFieldHover(use.name);
    case 'param': {
      const p = use.param;
      const name = p.name.name;
      // The constraints that mention this parameter.
      const mentions = new RegExp(`\\b${name}\\b`);
      const where = use.sig.where.map(exprText).filter((w) => mentions.test(w));
      return [
        code(`${name}: ${exprText(p.type)}${p.default ? ` = ${exprText(p.default)}` : ''}`),
        `parameter of ${use.sig.sigKind} \`${use.sig.name.name}\`${p.default ? '' : ' (required)'}`,
        where.length ? `where ${where.map((w) => `\`${w}\``).join(', ')}` : '',
      ].filter(Boolean).join('\n\n');
    }
    case 'preset': {
      const args = use.preset.args.map((a) => `${a.name ? `${a.name.name}: ` : ''}${exprText(a.value)}`).join(', ');
      const doc = docComment(use.preset.range, check);
      return [code(`preset "${use.preset.name.value}" (${args})`), `preset of ${use.sig.sigKind} \`${use.sig.name.name}\``, doc ?? ''].filter(Boolean).join('\n\n');
    }
    case 'custom':
      return CUSTOM_HOVER;
  }
}

export function hoverFor(sym: Sym, check: CheckResult): string | undefined {
  const { program } = check;
  switch (sym.kind) {
    case 'constructor': {
      const sig = sym.decl as A.SignatureDecl;
      const presets = sig.items.filter((i): i is A.PresetDecl => i.kind === 'Preset').map((p) => `"${p.name.value}"`);
      return [code(signatureText(sig)), docComment(sig.range, check) ?? '', presets.length ? `presets: ${presets.join(', ')}` : ''].filter(Boolean).join('\n\n');
    }
    case 'component': {
      const model = [...program.models.values()].find((m) => m.decl === sym.model);
      const c = model?.components.get(sym.name);
      if (!c) return undefined;
      const lines = [`\`\`\`pipe\n${c.role} ${c.name} = ${exprText(c.decl.init)}\n\`\`\``];
      if (c.input && c.output) lines.push(`shape: ${showDims(c.input)} -> ${showDims(c.resolvedOutput ?? c.output)}`);
      lines.push(`parameters: ${formatCount(c.paramCount)} (${c.paramCount})`);
      if (c.weights) lines.push(`weights "${c.weights.dir}"${c.layout ? `: read as ${c.layout}` : ''}`);
      if (c.params.size) lines.push([...c.params].map(([k, v]) => `${k}: ${show(v)}`).join(', '));
      return lines.join('\n\n');
    }
    case 'stage': {
      const est = check.estimates.get(sym.name);
      const stage = program.stages.find((s) => s.name === sym.name);
      const head = `stage ${sym.name}${stage?.after ? ` (after ${stage.after.name})` : ''}${stage?.model ? ` — model ${stage.model.name}` : ''}`;
      return est ? `${head}\n\n${estimateText(est)}` : head;
    }
    case 'model': {
      const m = program.models.get(sym.name);
      if (!m) return `model ${sym.name}`;
      const total = [...m.components.values()].reduce((a, c) => a + c.paramCount, 0);
      return `model ${sym.name}: ${[...m.components.values()].map((c) => `${c.name} (${c.role}, ${formatCount(c.paramCount)})`).join(', ')}\n\nparameters: ${formatCount(total)}${m.imageTokens ? `; ${m.imageTokens} image tokens per image` : ''}`;
    }
    case 'dataset': {
      const d = program.datasets.get(sym.name);
      return d ? `dataset ${sym.name} = ${d.ctor}(${[...d.params].map(([k, v]) => `${k}: ${show(v)}`).join(', ')})` : `dataset ${sym.name}`;
    }
    case 'template': {
      const t = sym.decl as A.TemplateDecl;
      const fields = t.fields.map((f) => `  ${f.name.name}: ${exprText(f.value)}`);
      return [code(`template ${sym.name} {\n${fields.join('\n')}\n}`), docComment(t.range, check) ?? ''].filter(Boolean).join('\n\n');
    }
  }
}
