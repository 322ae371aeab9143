// Who speaks in a conversation turn: the `from` of a LLaVA record mapped to the template's roles. Only
// `assistant` turns are trained, so this table decides what a dataset supervises.
//
// LLaVA writes human / gpt. LLaVA-JP's conversation template is roles=("ユーザー", "システム"): システム
// ("system") is the model that answers, so it is the assistant here, not a system prompt. アシスタント is
// accepted as the assistant too. Other corpora map their own spellings with the dataset's `roles:`
// argument (`roles: { user: "Q", assistant: ["A", "Answer"] }`), which adds to this table and wins over it.
import { M, runtimeError } from '../errors.js';

export type Role = 'system' | 'user' | 'assistant';
export const ROLE_NAMES: readonly Role[] = ['user', 'assistant', 'system'];

export const DEFAULT_ROLES: Readonly<Record<string, Role>> = {
  human: 'user', user: 'user', ユーザー: 'user',
  gpt: 'assistant', assistant: 'assistant', アシスタント: 'assistant', システム: 'assistant',
  system: 'system',
};

/**
 * The spelling -> role table of a dataset: the defaults, then its `roles` argument as the graph carries
 * it ({ user?: string | string[], assistant?: ..., system?: ... }; the checker has typed it, a hand-made
 * graph.json has not, so it is checked again: PIPE9056).
 */
export function roleTable(roles: unknown, dataset: string): Map<string, Role> {
  const table = new Map<string, Role>(Object.entries(DEFAULT_ROLES));
  if (roles === undefined || roles === null) return table;
  const bad = (why: string) => runtimeError(M.BadRoles, [dataset, why], undefined, 'write e.g. `roles: { user: "ユーザー", assistant: "システム" }`');
  if (typeof roles !== 'object' || Array.isArray(roles)) throw bad('must be an object of role -> spelling(s)');
  const given = new Map<string, Role>();
  for (const [role, spellings] of Object.entries(roles as Record<string, unknown>)) {
    if (!(ROLE_NAMES as string[]).includes(role)) throw bad(`names an unknown role \`${role}\` (roles are ${ROLE_NAMES.join(', ')})`);
    const list = typeof spellings === 'string' ? [spellings] : spellings;
    if (!Array.isArray(list) || !list.every((s): s is string => typeof s === 'string' && s !== ''))
      throw bad(`gives \`${role}\` something other than a non-empty string or a list of them`);
    for (const s of list) {
      const before = given.get(s);
      if (before && before !== role) throw bad(`gives "${s}" for both \`${before}\` and \`${role}\``);
      given.set(s, role as Role);
    }
  }
  for (const [s, role] of given) table.set(s, role);
  return table;
}
