// The `Roles` parameter type (llava_json's `roles:`): which spellings of a record's `from` mean which
// conversation role, written role -> spelling(s) because a field name must be an identifier and the
// spellings often are not (ユーザー, システム): `roles: { user: "ユーザー", assistant: ["システム", "A"] }`.
// The runtime adds these to its default table (runtime/data/roles.ts) and re-checks a hand-made graph.
import { M } from '../diagnostics/catalogue.js';
import type { Range } from '../diagnostics/source.js';
import type { Reporter } from './program.js';
import { closest } from './suggest.js';
import { typeName, type Value } from './values.js';

export const ROLE_KEYS = ['user', 'assistant', 'system'] as const;

/** Checks a `Roles` value; returns it with every role's spellings as a list, or undefined after reporting. */
export function coerceRoles(v: Value, what: string, range: Range, reporter: Reporter): Value | undefined {
  if (v.t !== 'obj') {
    reporter.report(M.TypeMismatch, range, what, 'roles such as { user: "ユーザー", assistant: "システム" }', typeName(v));
    return undefined;
  }
  const out = new Map<string, Value>();
  const roleOf = new Map<string, string>();
  let ok = true;
  for (const [role, given] of v.fields) {
    if (!(ROLE_KEYS as readonly string[]).includes(role)) {
      const d = reporter.report(M.NotInEnum, range, `a role in ${what}`, ROLE_KEYS.map((k) => `\`${k}\``).join(' | '), `\`${role}\``);
      const near = closest(role, ROLE_KEYS);
      if (near) d.hint = `did you mean \`${near}\`?`;
      ok = false;
      continue;
    }
    const items = given.t === 'list' ? given.items : [given];
    if (!items.length || !items.every((x) => x.t === 'str' && x.v !== '')) {
      reporter.report(M.TypeMismatch, range, `\`${role}\` in ${what}`, 'a non-empty string or a list of them', typeName(given));
      ok = false;
      continue;
    }
    for (const x of items) {
      const spelling = (x as { v: string }).v;
      const before = roleOf.get(spelling);
      if (before !== undefined && before !== role) {
        reporter.report(M.RoleGivenTwice, range, spelling, before, role).hint = 'a spelling means one role; remove it from one of them';
        ok = false;
      }
      roleOf.set(spelling, role);
    }
    out.set(role, { t: 'list', items });
  }
  return ok ? { t: 'obj', fields: out } : undefined;
}
