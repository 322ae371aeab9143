// The help pipec prints, from the command table (spec.ts): `pipec --help` lists the commands,
// `pipec help CMD` / `pipec CMD --help` gives one command's usage, options (meaning and default) and
// examples.
import * as fs from 'node:fs';
import { COMMANDS, optionsOf, TOP_OPTIONS, type CommandSpec, type OptionSpec } from './spec.js';

const WIDTH = 100;

export function globalHelp(): string {
  const nameWidth = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'pipec - compile, check, train and export .pipe programs for multimodal models',
    '',
    'usage:',
    '  pipec COMMAND [ARGS] [OPTIONS]',
    '  pipec help COMMAND               a command\'s usage, options and examples (or pipec COMMAND --help)',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(nameWidth)}${c.summary}`),
    '',
    'options:',
    ...optionLines(TOP_OPTIONS),
    '',
    'exit codes: 0 done (warnings allowed), 1 the program or run has errors, 2 pipec was called wrongly,',
    '3 internal error (PIPEC_DEBUG=1 prints the stack trace)',
    '',
  ].join('\n');
}

export function commandHelp(cmd: CommandSpec): string {
  const lines = [`pipec ${cmd.name} - ${cmd.summary}`, '', 'usage:', ...cmd.usage.map((u) => `  pipec ${u}`), '', ...cmd.about.split('\n'), ''];
  lines.push('options:', ...optionLines(optionsOf(cmd)), '');
  lines.push(cmd.examples.length === 1 ? 'example:' : 'examples:', ...cmd.examples.map((e) => `  ${e}`), '');
  return lines.join('\n');
}

/** `  -o, --output DIR   meaning (default: x)`, the meaning wrapped to the width, in one column. */
function optionLines(options: OptionSpec[]): string[] {
  const heads = options.map((o) => `${o.short ? `-${o.short}, ` : '    '}--${o.name}${o.value ? ` ${o.value}` : ''}`);
  const column = Math.min(Math.max(...heads.map((h) => h.length)) + 4, 34);
  const out: string[] = [];
  options.forEach((o, i) => {
    const text = `${o.meaning}${o.default ? ` (default: ${o.default})` : ''}`;
    const wrapped = wrap(text, WIDTH - column);
    const head = `  ${heads[i]}`;
    if (head.length + 2 > column) out.push(head, ...wrapped.map((w) => `${' '.repeat(column)}${w}`));
    else out.push(`${head.padEnd(column)}${wrapped[0]}`, ...wrapped.slice(1).map((w) => `${' '.repeat(column)}${w}`));
  });
  return out;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

/** The version in pipec's package.json (this file is dist/cli/help.js, two folders below the root). */
export function version(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(fs.readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pipec' && pkg.version) return pkg.version;
    } catch {
      // not at this depth
    }
  }
  return 'unknown';
}
