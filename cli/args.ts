// A pipec command line checked against the command table (spec.ts): node:util's parseArgs splits it
// into tokens (not strictly: its own errors name no command and carry advice about `--` that does not
// fit), and this file says what is wrong in pipec's words: an unknown command or option with the
// closest one, an option of another command, a missing or unexpected value, a value not among the
// choices. Every refusal is a UsageError (exit 2).
import { parseArgs } from 'node:util';
import { closest } from '../compiler/check/suggest.js';
import { UsageError } from '../compiler/service/service.js';
import { COMMANDS, commandSpec, optionsOf, TOP_OPTIONS, type CommandSpec, type OptionSpec } from './spec.js';

/** A usage error found in the command line, with the command it was for (if one was recognised). */
export class CommandLineError extends UsageError {
  constructor(message: string, readonly command?: string) {
    super(message);
  }
}

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface CommandLine {
  /** undefined: no command was given (`pipec`, `pipec --help`, `pipec --version`) */
  command?: CommandSpec;
  positionals: string[];
  /** by long name; a switch is true when given, a multiple option a list */
  values: OptionValues;
}

type ParseOptions = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/** Every option any command takes, by long name. `data` is a switch for check and takes a dataset for
 *  eval: here the last one listed wins; the command's own options are laid over it once it is known. */
function allOptions(): Map<string, OptionSpec> {
  const all = new Map<string, OptionSpec>();
  for (const o of TOP_OPTIONS) all.set(o.name, o);
  for (const c of COMMANDS) for (const o of optionsOf(c)) all.set(o.name, o);
  return all;
}

/** parseArgs's tokens, not strict: it must only know which options take a value. */
function tokenize(argv: string[], specs: Iterable<OptionSpec>) {
  const options: ParseOptions = {};
  for (const o of specs) options[o.name] = { type: o.value ? 'string' : 'boolean', ...(o.short ? { short: o.short } : {}) };
  return parseArgs({ args: argv, strict: false, allowPositionals: true, tokens: true, options }).tokens;
}

const firstPositional = (tokens: ReturnType<typeof tokenize>) => tokens.find((t) => t.kind === 'positional' || t.kind === 'option-terminator');

export function parseCommandLine(argv: string[]): CommandLine {
  const all = allOptions();
  const head = firstPositional(tokenize(argv, all.values()));
  let command: CommandSpec | undefined;
  if (head?.kind === 'positional') {
    command = commandSpec(head.value);
    if (!command) throw new CommandLineError(unknownCommand(head.value));
  }
  const allowed = command ? optionsOf(command) : TOP_OPTIONS;
  for (const o of allowed) all.set(o.name, o);
  const tokens = tokenize(argv, all.values());
  const first = firstPositional(tokens);
  const values: OptionValues = {};
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') {
      if (t !== first) positionals.push(t.value);
      continue;
    }
    if (t.kind !== 'option') continue;
    const spec = allowed.find((o) => o.name === t.name);
    if (!spec) throw new CommandLineError(unknownOption(t.rawName, command, allowed, all.has(t.name)), command?.name);
    const shown = spec.short && t.rawName === `-${spec.short}` ? t.rawName : `--${spec.name}`;
    if (!spec.value) {
      if (t.inlineValue) throw new CommandLineError(`${shown} takes no value (got "${t.value}")`, command?.name);
      values[spec.name] = true;
      continue;
    }
    // parseArgs takes the next argument as the value even when it is an option (`--out --resume`)
    if (t.value === undefined || (!t.inlineValue && t.value.startsWith('-') && t.value.length > 1 && isOptionLike(t.value, all))) {
      throw new CommandLineError(`${shown} needs a value: ${shown} ${spec.value}${t.value === undefined ? '' : ` (a value that starts with "-" is written ${shown}=VALUE)`}`, command?.name);
    }
    if (spec.choices && !spec.choices.includes(t.value)) {
      const near = closest(t.value, spec.choices);
      throw new CommandLineError(`--${spec.name} must be one of ${spec.choices.join(', ')}, got ${t.value}${near ? `; did you mean ${near}?` : ''}`, command?.name);
    }
    if (spec.multiple) values[spec.name] = [...((values[spec.name] as string[] | undefined) ?? []), t.value];
    else values[spec.name] = t.value;
  }
  return { command, positionals, values };
}

/** `--out -1` is a value; `--out --resume` (or `-v`) forgot one. */
function isOptionLike(v: string, all: Map<string, OptionSpec>): boolean {
  if (v.startsWith('--')) return true;
  return !/^-[\d.]/.test(v) || [...all.values()].some((o) => o.short && v === `-${o.short}`);
}

export function unknownCommand(name: string): string {
  const near = closest(name, COMMANDS.map((c) => c.name));
  return `unknown command \`${name}\`${near ? `; did you mean \`${near}\`?` : ''}`;
}

function unknownOption(raw: string, command: CommandSpec | undefined, allowed: OptionSpec[], elsewhere: boolean): string {
  const where = command ? `\`${command.name}\`` : '`pipec`';
  if (elsewhere) {
    const owners = COMMANDS.filter((c) => optionsOf(c).some((o) => `--${o.name}` === raw || (o.short && `-${o.short}` === raw)));
    const ownersText = owners.length ? ` (${owners.map((c) => c.name).join(', ')} ${owners.length === 1 ? 'takes' : 'take'} it)` : '';
    const top = TOP_OPTIONS.some((o) => `--${o.name}` === raw || `-${o.short}` === raw) ? ` (it is \`pipec ${raw}\`, without a command)` : '';
    return `${where} has no option ${raw}${ownersText || top}`;
  }
  const near = raw.startsWith('--') ? closest(raw.slice(2), allowed.map((o) => o.name)) : undefined;
  return `${where} has no option ${raw}${near ? `; did you mean --${near}?` : ''}`;
}
