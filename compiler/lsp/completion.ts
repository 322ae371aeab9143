// Completion from the text before the cursor: keywords at the top level, stage fields, names of models /
// datasets / stages / components in scope, constructors of the right kind, parameters with their types
// and defaults inside a call, presets, import paths.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CompletionItemKind, type CompletionItem } from 'vscode-languageserver';
import type * as A from '../ast/nodes.js';
import { exprText } from '../check/instance.js';
import type { CheckResult } from '../check/passes.js';
import type { LoadedFile } from '../check/program.js';
import { plainText, STAGE_FIELDS } from '../check/stages.js';
import { signatureText, stageFieldHover } from './hover.js';

const TOP_KEYWORDS = ['import', 'model', 'dataset', 'stage', 'template', 'encoder', 'projector', 'llm', 'data', 'optimizer', 'schedule', 'device'];
const FIELD_KINDS: Record<string, A.SignatureKind> = { optimizer: 'optimizer', schedule: 'schedule', devices: 'device' };

/** Which `{ ... }` block the offset is in: the keyword and name that open it. */
function enclosingBlock(text: string, offset: number): { keyword: string; name: string } | undefined {
  let depth = 0;
  for (let i = offset - 1; i >= 0; i--) {
    const ch = text[i];
    if (ch === '}') depth++;
    else if (ch === '{') {
      if (depth === 0) {
        const m = /(\w+)\s+(\w+)\s*$/.exec(text.slice(Math.max(0, i - 200), i));
        return m ? { keyword: m[1], name: m[2] } : undefined;
      }
      depth--;
    }
  }
  return undefined;
}

/** The call whose argument list the offset is in: the callee name, and the argument names already given. */
function enclosingCall(text: string, offset: number): { callee: string; given: Set<string> } | undefined {
  let depth = 0;
  for (let i = offset - 1; i >= 0; i--) {
    const ch = text[i];
    if (ch === ')' || ch === ']') depth++;
    else if (ch === '[') depth--;
    else if (ch === '{' || ch === '}') return undefined;
    else if (ch === '(') {
      if (depth === 0) {
        const m = /(\w+)\s*$/.exec(text.slice(Math.max(0, i - 100), i));
        if (!m) return undefined;
        const given = new Set([...text.slice(i, offset).matchAll(/(\w+)\s*:/g)].map((x) => x[1]));
        return { callee: m[1], given };
      }
      depth--;
    }
  }
  return undefined;
}

function sigsOf(file: LoadedFile, kind: A.SignatureKind): A.SignatureDecl[] {
  return [...file.scope.values()].filter((d): d is A.SignatureDecl => d.kind === 'Signature' && d.sigKind === kind);
}

function ctorItems(file: LoadedFile, kind: A.SignatureKind): CompletionItem[] {
  const items: CompletionItem[] = sigsOf(file, kind).map((s) => ({ label: s.name.name, kind: CompletionItemKind.Function, detail: signatureText(s).split('\n')[0] }));
  if (kind === 'encoder' || kind === 'projector' || kind === 'llm') items.push({ label: 'custom', kind: CompletionItemKind.Function, detail: 'custom("Class", module: "./file.ts", trust: true, base: ...)' });
  return items;
}

export function complete(text: string, offset: number, check: CheckResult | undefined, filePath: string): CompletionItem[] {
  const before = text.slice(0, offset);
  const line = before.slice(before.lastIndexOf('\n') + 1);
  const file = check?.program.entry;

  // import "...
  const imp = /^\s*import\s+"([^"]*)$/.exec(line);
  if (imp) {
    const items: CompletionItem[] = ['std/vision', 'std/projectors', 'std/llm', 'std/data', 'std/train'].map((s) => ({ label: s, kind: CompletionItemKind.Module }));
    try {
      for (const f of fs.readdirSync(path.dirname(filePath))) if (f.endsWith('.pipe') && path.join(path.dirname(filePath), f) !== filePath) items.push({ label: `./${f}`, kind: CompletionItemKind.File });
    } catch {
      /* an unsaved document has no folder to list */
    }
    return items;
  }
  if (!file) return TOP_KEYWORDS.map((k) => ({ label: k, kind: CompletionItemKind.Keyword }));

  // preset: "...
  const presetCall = /preset\s*:\s*"[^"]*$/.test(line) ? enclosingCall(text, offset) : undefined;
  if (presetCall) {
    const sig = [...file.scope.values()].find((d): d is A.SignatureDecl => d.kind === 'Signature' && d.name.name === presetCall.callee);
    return (sig?.items ?? []).filter((i): i is A.PresetDecl => i.kind === 'Preset').map((p) => ({ label: p.name.value, kind: CompletionItemKind.EnumMember, detail: p.args.map((a) => `${a.name?.name}: ${exprText(a.value)}`).join(', ') }));
  }

  const block = enclosingBlock(text, offset);
  const call = enclosingCall(text, offset);
  if (call) {
    // Parameter names (when at an argument's start) of the signature being called.
    if (/[(,]\s*\w*$/.test(before)) {
      const sig = [...file.scope.values()].find((d): d is A.SignatureDecl => d.kind === 'Signature' && d.name.name === call.callee);
      if (sig)
        return sig.params
          .filter((p) => !call.given.has(p.name.name))
          .map((p) => ({ label: p.name.name, kind: CompletionItemKind.Property, detail: `${exprText(p.type)}${p.default ? ` = ${exprText(p.default)}` : ' (required)'}`, insertText: `${p.name.name}: ` }))
          .concat(sig.items.some((i) => i.kind === 'Preset') && !call.given.has('preset') ? [{ label: 'preset', kind: CompletionItemKind.Property, detail: 'a named preset', insertText: 'preset: ' }] : []);
    }
  }

  if (block?.keyword === 'model') {
    const role = /^\s*(encoder|projector|llm)\s+\w+\s*=\s*\w*$/.exec(line);
    if (role) return ctorItems(file, role[1] as A.SignatureKind);
    const m = check!.program.models.get(block.name);
    if (/(\bflow\b.*(->\s*)?|\w+\.)\w*$/.test(line) && m) return [...m.components.values()].map((c) => ({ label: c.name, kind: CompletionItemKind.Variable, detail: c.role }));
    if (/^\s*\w*$/.test(line)) return ['encoder', 'projector', 'llm', 'flow'].map((k) => ({ label: k, kind: CompletionItemKind.Keyword }));
    return [];
  }

  if (block?.keyword === 'stage') {
    const field = /^\s*(?:.*,\s*)?(\w+)\s*:\s*(.*)$/.exec(line);
    if (field) {
      const [, key, valueText] = field;
      const byKind = (kind: A.Decl['kind']) => [...file.scope.values()].filter((d) => d.kind === kind && d.name.name !== block.name).map((d) => ({ label: d.name.name, kind: CompletionItemKind.Reference }));
      if (key === 'model') return byKind('Model');
      if (key === 'data') return byKind('Dataset');
      if (key === 'after') return byKind('Stage');
      if (key === 'train' || key === 'freeze') {
        const stage = check!.program.stages.find((s) => s.name === block.name);
        const listed = new Set(valueText.match(/\w+(?:\.\w+)?/g) ?? []);
        return [
          ...[...(stage?.model?.components.values() ?? [])].filter((c) => !listed.has(c.name)).map((c) => ({ label: c.name, kind: CompletionItemKind.Variable, detail: c.role })),
          ...[...(stage?.model?.adapters.values() ?? [])].filter((a) => !listed.has(a.name)).map((a) => ({ label: a.name, kind: CompletionItemKind.Variable, detail: `adapter (${a.kind}, rank ${a.rank})` })),
        ];
      }
      if (key === 'precision') return ['bf16', 'fp16', 'fp32'].map((v) => ({ label: v, kind: CompletionItemKind.EnumMember }));
      if (key === 'sharding') return ['none', 'ddp', 'zero1', 'zero2', 'zero3', 'fsdp'].map((v) => ({ label: v, kind: CompletionItemKind.EnumMember }));
      if (FIELD_KINDS[key]) return ctorItems(file, FIELD_KINDS[key]);
      return [];
    }
    const have = new Set((check!.program.stages.find((s) => s.name === block.name)?.decl.fields ?? []).map((f) => f.name.name));
    return Object.entries(STAGE_FIELDS)
      .filter(([k]) => !have.has(k))
      .map(([k, doc]) => ({
        label: k,
        kind: CompletionItemKind.Field,
        detail: plainText(doc.meaning),
        documentation: { kind: 'markdown', value: stageFieldHover(k) ?? '' },
        insertText: `${k}: `,
      }));
  }

  if (/^\s*dataset\s+\w+\s*=\s*\w*$/.test(line)) return ctorItems(file, 'data');
  if (!block && /^\s*\w*$/.test(line)) return TOP_KEYWORDS.map((k) => ({ label: k, kind: CompletionItemKind.Keyword }));
  return [];
}
