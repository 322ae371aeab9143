// Which part of a Hugging Face checkpoint is a component, and under which names: the one module the
// checker (checkpoint.ts, headers only) and the runtime loader (runtime/train/checkpoint.ts) share, so
// what `pipec check` accepts is exactly what `pipec run` loads.
//
// A component's tensors have pipec's names, the stdlib's `tensor` lines: `vision_model.*` for an encoder,
// `model.*` + `lm_head.weight` for an llm, `multi_modal_projector.linear_K.*` for a projector. A
// checkpoint may hold them under other names. Each way of naming them is a Layout: a ROOT, the
// sub-module the component is in ('' = the top level; `vision_tower`, `model.language_model`, ...), and
// a FORM, how the component names its own tensors below the root. The layouts recognised, with where
// transformers writes them (transformers 5.18, conversion_mapping.py: `llava` renames
// `^language_model.lm_head` -> `lm_head`, `^language_model` -> `model.language_model`,
// `^vision_tower` -> `model.vision_tower`, `^multi_modal_projector` -> `model.multi_modal_projector`;
// `CLIPVisionModel` is PrefixChange(prefix_to_remove="vision_model"); `mixtral` renames
// `.block_sparse_moe.` -> `.mlp.` and merges `experts.*.w1` / `w3` into `experts.gate_up_proj`
// (MergeModulelist(dim=0), Concatenate(dim=1)), `experts.*.w2` into `experts.down_proj`):
//
//   encoder  vision_model.*                        CLIPVisionModel / SiglipVisionModel in transformers 4.x,
//                                                  and the hub's two-tower CLIPModel / SiglipModel
//            *                                     the same saved by transformers 5.x (no vision_model.)
//            vision_tower.vision_model.*           LlavaForConditionalGeneration, transformers 4.x
//            vision_tower.*                        the same saved by transformers 5.x
//            model.vision_tower[.vision_model].*   LlavaForConditionalGeneration, transformers 5.x in memory
//            model.vision_tower.vision_tower.vision_model.*   the original LLaVA / LLaVA-JP repos
//   llm      model.* + lm_head.weight              *ForCausalLM (4.x and 5.x), and the LLaVA repos
//            language_model.model.* + language_model.lm_head.weight   LLaVA, transformers 4.x
//            model.language_model.* + lm_head.weight                  LLaVA, transformers 5.x
//            Mixtral experts per expert (block_sparse_moe.experts.E.w1/w2/w3: the hub, 4.x, and what
//            5.x's save_pretrained writes) or fused (mlp.experts.gate_up_proj [E, 2I, D] with w1 first,
//            mlp.experts.down_proj [E, D, I], mlp.gate: a 5.x state_dict saved as it is)
//   projector multi_modal_projector.linear_K.*     LLaVA (transformers 4.x), pipec
//            model.multi_modal_projector.linear_K.*   LLaVA, transformers 5.x
//            model.mm_projector.{0,2,..}.*         the original LLaVA / LLaVA-JP repos (nn.Sequential:
//                                                  Linear, GELU, Linear; `linear` is one nn.Linear)
//            mm_projector.*, linear_K.*, {0,2}.*   a projector file with the prefix stripped
//
// Detection counts, for every candidate, how many of the component's tensors the checkpoint has under
// its names; the candidate with the most wins. Two candidates that both find every tensor are
// ambiguous: `weights "DIR#ROOT"` picks the root (`#` alone: the top level).

export type Family = 'vision' | 'llm' | 'projector';

/** Where one of the component's tensors is in the checkpoint. */
export interface TensorSource {
  name: string;
  /** A fused Mixtral expert tensor [E, ...]: the expert's index along dimension 0. */
  expert?: number;
  /** gate_up_proj [E, 2I, D]: 0 = the gate half (w1), 1 = the up half (w3) of dimension 1. */
  half?: 0 | 1;
}

export interface Layout {
  family: Family;
  /** The sub-module the component is under ('' = top level): what `weights "DIR#ROOT"` names. */
  root: string;
  form: string;
  moe: 'experts' | 'fused';
  /** Where a tensor (by pipec's name) may be, in order of preference; the first present is taken. */
  sources(canonical: string): TensorSource[];
}

/** `weights "DIR#ROOT"`: the path and the explicit root, if any (`#` alone = the top level). */
export function splitWeightsRef(ref: string): { path: string; part?: string } {
  const i = ref.lastIndexOf('#');
  if (i < 0) return { path: ref };
  return { path: ref.slice(0, i), part: ref.slice(i + 1).replace(/\.$/, '') };
}

const VISION_OPS = new Set(['vit', 'clip_vit', 'siglip_vit']);
const LLM_OPS = new Set(['llama', 'mistral', 'mixtral']);
const PROJECTOR_OPS = new Set(['linear', 'mlp_gelu', 'identity']);

/** The family of a standard op (a custom component's is its base's). */
export function familyOf(op: string): Family | undefined {
  if (VISION_OPS.has(op)) return 'vision';
  if (LLM_OPS.has(op)) return 'llm';
  if (PROJECTOR_OPS.has(op)) return 'projector';
  return undefined;
}

/** The family of a component from its tensors' (pipec) names, for loaders that see only names. */
export function familyOfTensors(names: readonly string[]): Family {
  if (names.length && names.every((n) => n.startsWith('multi_modal_projector.'))) return 'projector';
  if (names.some((n) => n.startsWith('vision_model.'))) return 'vision';
  return 'llm';
}

const ROOTS: Record<Family, string[]> = {
  vision: ['', 'vision_tower', 'model.vision_tower', 'model.vision_tower.vision_tower'],
  llm: ['', 'language_model', 'model.language_model'],
  projector: ['', 'model'],
};

const FORMS: Record<Family, string[]> = {
  vision: ['tower', 'bare'],
  llm: ['causal-lm', 'base'],
  projector: ['llava', 'mm_projector', 'linear', 'bare', 'sequential'],
};

const dot = (root: string) => (root ? `${root}.` : '');

/** Mixtral's per-expert names as transformers 5 keeps them in memory (fused), or unchanged. */
function moeSources(tail: string, moe: Layout['moe']): { tail: string; expert?: number; half?: 0 | 1 } {
  if (moe === 'experts') return { tail };
  const m = /^(layers\.\d+\.)block_sparse_moe\.(?:experts\.(\d+)\.(w[123])\.weight|gate\.weight)$/.exec(tail);
  if (!m) return { tail };
  if (!m[2]) return { tail: `${m[1]}mlp.gate.weight` };
  const expert = Number(m[2]);
  if (m[3] === 'w2') return { tail: `${m[1]}mlp.experts.down_proj`, expert };
  return { tail: `${m[1]}mlp.experts.gate_up_proj`, expert, half: m[3] === 'w1' ? 0 : 1 };
}

function makeLayout(family: Family, root: string, form: string, moe: Layout['moe']): Layout {
  const r = dot(root);
  const sources = (canonical: string): TensorSource[] => {
    switch (family) {
      case 'vision': {
        const tail = canonical.startsWith('vision_model.') ? canonical.slice('vision_model.'.length) : undefined;
        if (tail === undefined) return [{ name: r + canonical }];
        return [{ name: r + (form === 'tower' ? 'vision_model.' : '') + tail }];
      }
      case 'llm': {
        if (canonical === 'lm_head.weight') {
          // transformers 5's LLaVA keeps the head at the top, beside model.language_model
          const own = { name: `${r}lm_head.weight` };
          return root && form === 'base' ? [own, { name: 'lm_head.weight' }] : [own];
        }
        const tail = canonical.startsWith('model.') ? canonical.slice('model.'.length) : undefined;
        if (tail === undefined) return [{ name: r + canonical }];
        const m = moeSources(tail, moe);
        return [{ name: r + (form === 'causal-lm' ? 'model.' : '') + m.tail, expert: m.expert, half: m.half }];
      }
      case 'projector': {
        const m = /^multi_modal_projector\.linear_(\d+)\.(weight|bias)$/.exec(canonical);
        if (!m) return [{ name: r + canonical }];
        const k = Number(m[1]), p = m[2];
        switch (form) {
          case 'llava': return [{ name: `${r}multi_modal_projector.linear_${k}.${p}` }];
          case 'bare': return [{ name: `${r}linear_${k}.${p}` }];
          case 'mm_projector': return [{ name: `${r}mm_projector.${2 * (k - 1)}.${p}` }];
          case 'sequential': return [{ name: `${r}${2 * (k - 1)}.${p}` }];
          default: return k === 1 ? [{ name: `${r}mm_projector.${p}` }] : []; // 'linear': one nn.Linear
        }
      }
    }
  };
  return { family, root, form, moe, sources };
}

/** pipec's own names: what a run's checkpoints and the stdlib use. */
export function identityLayout(family: Family): Layout {
  return makeLayout(family, '', FORMS[family][0]!, 'experts');
}

export interface Detection {
  layout: Layout;
  /** Tensors of the component found under the layout's names, of `total`. */
  found: number;
  total: number;
  /** Other layouts that also find every tensor (then the choice is ambiguous). */
  alsoComplete: Layout[];
}

/**
 * The layout under which the checkpoint (its tensor names: `has`) holds most of `names` (pipec's names of
 * one component). `part` restricts the root (`weights "DIR#part"`). With nothing found, the identity
 * layout (or, with `part`, that root's first form) is returned with found = 0.
 */
export function detectLayout(family: Family, names: readonly string[], has: (name: string) => boolean, part?: string): Detection {
  const moes: Layout['moe'][] = family === 'llm' && names.some((n) => n.includes('.block_sparse_moe.')) ? ['experts', 'fused'] : ['experts'];
  const roots = part === undefined ? ROOTS[family] : [part];
  const candidates: Layout[] = [];
  for (const root of roots) for (const form of FORMS[family]) for (const moe of moes) candidates.push(makeLayout(family, root, form, moe));
  let best: Detection | undefined;
  const complete: Layout[] = [];
  for (const layout of candidates) {
    let found = 0;
    for (const n of names) if (layout.sources(n).some((s) => has(s.name))) found++;
    if (names.length && found === names.length) complete.push(layout);
    if (!best || found > best.found) best = { layout, found, total: names.length, alsoComplete: [] };
  }
  const chosen = best && best.found > 0 ? best : { layout: part === undefined ? identityLayout(family) : candidates[0]!, found: 0, total: names.length, alsoComplete: [] };
  // Layouts that name the same tensors (e.g. a tensor outside every form's pattern) are one choice.
  const sig = (l: Layout) => names.map((n) => l.sources(n).find((s) => has(s.name))?.name ?? '').join('\n');
  const mine = sig(chosen.layout);
  chosen.alsoComplete = complete.filter((l) => l !== chosen.layout && sig(l) !== mine);
  return chosen;
}

/** The source of `canonical` the checkpoint has (or the layout's first choice when none is there). */
export function sourceOf(layout: Layout, canonical: string, has: (name: string) => boolean): TensorSource | undefined {
  const all = layout.sources(canonical);
  return all.find((s) => has(s.name)) ?? all[0];
}

/** The shape a source yields once sliced: a fused expert drops dimension 0 and halves the next for gate/up. */
export function slicedShape(shape: readonly number[], s: TensorSource): number[] | undefined {
  if (s.expert === undefined) return [...shape];
  if (shape.length < 2 || s.expert >= shape[0]!) return undefined;
  const rest = shape.slice(1);
  if (s.half !== undefined) {
    if (rest[0]! % 2) return undefined;
    rest[0] = rest[0]! / 2;
  }
  return rest;
}

/** The element range of a source inside its (row-major) checkpoint tensor. */
export function sliceRange(shape: readonly number[], s: TensorSource): [number, number] {
  const size = shape.reduce((a, b) => a * b, 1);
  if (s.expert === undefined) return [0, size];
  const per = size / shape[0]!;
  const begin = s.expert * per;
  if (s.half === undefined) return [begin, begin + per];
  return [begin + (s.half * per) / 2, begin + ((s.half + 1) * per) / 2];
}

/** How a layout's tensors are named, e.g. `language_model.model.* + language_model.lm_head.weight`. */
export function layoutPattern(l: Layout): string {
  const r = dot(l.root);
  switch (l.family) {
    case 'vision':
      return `${r}${l.form === 'tower' ? 'vision_model.' : ''}*`;
    case 'llm': {
      const body = `${r}${l.form === 'causal-lm' ? 'model.' : ''}*`;
      const head = l.root && l.form === 'base' ? 'lm_head.weight' : `${r}lm_head.weight`;
      return `${body} + ${head}${l.moe === 'fused' ? ', experts fused (mlp.experts.gate_up_proj)' : ''}`;
    }
    case 'projector':
      return { llava: `${r}multi_modal_projector.linear_K.*`, bare: `${r}linear_K.*`, mm_projector: `${r}mm_projector.{0,2,..}.*`, sequential: `${r}{0,2,..}.*`, linear: `${r}mm_projector.*` }[l.form] ?? `${r}*`;
  }
}

/** Where a layout comes from, in words, for `check -v`, hover and `pipec graph`. */
export function layoutOrigin(l: Layout, config?: Record<string, unknown>): string {
  const arch = Array.isArray(config?.['architectures']) && typeof config['architectures'][0] === 'string' ? (config['architectures'][0] as string) : undefined;
  const twoTower = typeof config?.['vision_config'] === 'object' && typeof config?.['text_config'] === 'object' && /^(clip|siglip)/i.test(String(config?.['model_type'] ?? ''));
  const llavaRepo = !!config && ('mm_hidden_size' in config || 'mm_vision_tower' in config || 'mm_projector_type' in config);
  switch (`${l.family}:${l.root}:${l.form}`) {
    case 'vision::tower':
      return twoTower ? `the vision tower of a two-tower ${arch ?? 'CLIP/SigLIP'} checkpoint (text tower ignored)` : `${arch ?? 'a vision tower'}, as transformers 4.x writes it`;
    case 'vision::bare':
      return `${arch ?? 'a vision tower'}, as transformers 5.x writes it (no vision_model. prefix)`;
    case 'vision:vision_tower:tower':
    case 'llm:language_model:causal-lm':
    case 'projector::llava':
      return l.family === 'projector' && !config?.['text_config'] ? 'a LLaVA projector (LLaVA / pipec names)' : 'LlavaForConditionalGeneration, transformers 4.x layout (also what 5.x save_pretrained writes)';
    case 'vision:vision_tower:bare':
      return 'LlavaForConditionalGeneration, as transformers 5.x save_pretrained writes it';
    case 'vision:model.vision_tower:tower':
    case 'vision:model.vision_tower:bare':
    case 'llm:model.language_model:base':
    case 'projector:model:llava':
      return 'LlavaForConditionalGeneration, transformers 5.x layout';
    case 'vision:model.vision_tower.vision_tower:tower':
    case 'projector:model:mm_projector':
    case 'projector:model:linear':
      return 'the original LLaVA / LLaVA-JP training-repo layout';
    case 'llm::causal-lm':
      return llavaRepo ? `the original LLaVA / LLaVA-JP training-repo layout (${arch ?? 'Llava*ForCausalLM'})` : `${arch ?? 'a causal LM'}`;
    case 'llm::base':
      return `${arch ?? 'a base model'} without the model. prefix`;
    default:
      return l.root ? `the part under ${l.root}.` : 'a projector file';
  }
}

export function describeLayout(l: Layout, config?: Record<string, unknown>): string {
  return `${layoutOrigin(l, config)}: ${layoutPattern(l)}`;
}

/**
 * A tensor missing under the chosen layout may sit under a prefix no layout knows (`visual.`, a custom
 * wrapper): the checkpoint tensor whose name ends with the component-relative part of `source`, and the
 * root that would read it (`weights "DIR#ROOT"`).
 */
export function elsewhere(family: Family, canonical: string, names: Iterable<string>): { found: string; root: string } | undefined {
  const tail = family === 'vision' ? canonical.replace(/^vision_model\./, '') : family === 'llm' ? canonical.replace(/^model\./, '') : canonical.replace(/^multi_modal_projector\./, '');
  if (tail === canonical && family !== 'projector') return undefined;
  for (const n of names) {
    if (!n.endsWith(`.${tail}`)) continue;
    let root = n.slice(0, -tail.length - 1);
    if (family === 'vision') root = root.replace(/(^|\.)vision_model$/, '');
    if (family === 'llm') root = root.replace(/(^|\.)model$/, '');
    if (family === 'projector') root = root.replace(/(^|\.)multi_modal_projector$/, '');
    return { found: n, root };
  }
  return undefined;
}
