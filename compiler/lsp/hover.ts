// Hover: a constructor's signature, a component's shapes and parameter count, a stage's trainable
// parameters and memory per device.
import type * as A from '../ast/nodes.js';
import { exprText } from '../check/instance.js';
import type { StageEstimate } from '../check/memory.js';
import type { CheckResult } from '../check/passes.js';
import { formatBytes, formatCount, show, showDims } from '../check/values.js';
import type { Sym } from './navigation.js';

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

export function hoverFor(sym: Sym, check: CheckResult): string | undefined {
  const { program } = check;
  switch (sym.kind) {
    case 'constructor': {
      const sig = sym.decl as A.SignatureDecl;
      const presets = sig.items.filter((i): i is A.PresetDecl => i.kind === 'Preset').map((p) => `"${p.name.value}"`);
      return ['```pipe', signatureText(sig), '```', presets.length ? `presets: ${presets.join(', ')}` : ''].filter(Boolean).join('\n');
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
    case 'template':
      return `template ${sym.name}`;
  }
}
