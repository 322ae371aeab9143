// The conventions of the pipec command line (issue 14): each command's own help, `pipec help CMD`,
// --version, "did you mean" for a mistyped command, option or value, and usage errors that are one line
// and a pointer to the help, exit 2. A few as a user sees them (pipec as a child process: exit code,
// stdout, stderr); the many others through main() in this process, the code bin/pipec.js runs, because
// each child process loads the compiler anew (about a second of CPU).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { parseCommandLine } from '../cli/args.js';
import { main } from '../cli/main.js';
import { BACKEND_CHOICES, COMMANDS, EXPORT_TARGETS, optionsOf } from '../cli/spec.js';
import { BACKEND_NAMES } from '../runtime/backend/backends.js';
import { EXPORT_TARGETS as RUNTIME_EXPORT_TARGETS } from '../runtime/export/commands.js';
import { pipec as pipecProcess } from './helpers/cli.js';
import { REPO_ROOT, repo } from './paths.js';

function pipec(...args: string[]) {
  const r = pipecProcess(args, { cwd: REPO_ROOT });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** In this process, for the checks that need many invocations of the same code bin/pipec.js runs. */
async function inProcess(...args: string[]) {
  let out = '';
  let err = '';
  const code = await main(args, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

/** A usage error: exit 2, nothing on stdout, and on stderr exactly `pipec: MESSAGE` then the pointer. */
function assertUsageError(r: { code: number | null; out: string; err: string }, message: RegExp, help: string) {
  assert.equal(r.code, 2, r.err);
  assert.equal(r.out, '');
  const lines = r.err.split('\n');
  assert.equal(lines.length, 3, `not one line and a pointer:\n${r.err}`);
  assert.match(lines[0], /^pipec: /);
  assert.match(lines[0], message);
  assert.equal(lines[1], `see \`${help}\``);
  assert.equal(lines[2], '');
  // neither Node's own parseArgs message nor a stack trace
  assert.doesNotMatch(r.err, /ERR_PARSE_ARGS|To specify a positional|Unknown option '|\n\s+at .+:\d+:\d+/);
}

const pkgVersion = (JSON.parse(fs.readFileSync(repo('package.json'), 'utf8')) as { version: string }).version;

describe('pipec command line: help, version, did you mean', function () {
  this.timeout(120_000);

  it('every command has its own help: usage, each option with its meaning and default, an example (exit 0)', async () => {
    const seen = new Set<string>();
    for (const cmd of COMMANDS) {
      const r = await inProcess(cmd.name, '--help');
      assert.equal(r.code, 0, `${cmd.name} --help: ${r.err}`);
      assert.equal(r.err, '');
      assert.match(r.out, new RegExp(`^pipec ${cmd.name} - `), `${cmd.name} --help begins with another title:\n${r.out}`);
      assert.match(r.out, new RegExp(`\\nusage:\\n  pipec ${cmd.name}\\b`));
      assert.match(r.out, new RegExp(`\\nexamples?:\\n  pipec ${cmd.name}\\b`));
      for (const o of optionsOf(cmd)) {
        const head = `--${o.name}${o.value ? ` ${o.value}` : ''}`;
        const at = r.out.indexOf(head);
        assert.ok(at >= 0, `${cmd.name} --help does not list ${head}`);
        // the meaning follows the option (its first words, before any line break of the wrapping)
        assert.ok(r.out.slice(at).replace(/\s+/g, ' ').includes(o.meaning.split(' ').slice(0, 3).join(' ')), `${cmd.name} --help: ${head} without its meaning`);
        if (o.default) assert.ok(r.out.replace(/\s+/g, ' ').includes(`(default: ${o.default})`), `${cmd.name} --help: ${head} without its default`);
      }
      seen.add(r.out);
    }
    assert.equal(seen.size, COMMANDS.length, 'two commands print the same help');
    // facts a user relies on, stated apart from the table the help is printed from
    const run = pipec('run', '-h').out.replace(/\s+/g, ' ');
    for (const s of ['--out DIR', 'default: runs/NAME', '--resume', '--overwrite', '--backend NAME', 'default: auto', '--set stage.NAME.FIELD=VALUE']) assert.ok(run.includes(s), `run -h lacks ${s}`);
    const generate = (await inProcess('generate', '--help')).out.replace(/\s+/g, ' ');
    for (const s of ['--prompt TEXT', '--image FILE', '--max-tokens N at most N new tokens (default: 32)', '--seed S']) assert.ok(generate.includes(s), `generate --help lacks ${s}`);
    assert.doesNotMatch(generate, /--config|--set /, 'generate compiles no program: no --config/--set');
  });

  it('pipec help CMD is CMD --help; pipec help and --help list every command; pipec alone is a usage error', async () => {
    const child = pipec('help', 'run');
    assert.equal(child.code, 0, child.err);
    assert.equal(child.out, pipec('run', '--help').out);
    for (const cmd of COMMANDS) assert.equal((await inProcess('help', cmd.name)).out, (await inProcess(cmd.name, '--help')).out, `help ${cmd.name}`);
    const list = await inProcess('--help');
    assert.equal(list.code, 0);
    assert.equal((await inProcess('help')).out, list.out);
    for (const cmd of COMMANDS) assert.match(list.out, new RegExp(`\\n  ${cmd.name} +\\S`), `--help does not list ${cmd.name}`);
    const bare = pipec();
    assert.equal(bare.code, 2);
    assert.equal(bare.out, '');
    assert.equal(bare.err, list.out);
    assertUsageError(await inProcess('help', 'rnu'), /unknown command `rnu`; did you mean `run`\?/, 'pipec --help');
  });

  it('--version and -V print the version in package.json (exit 0)', async () => {
    for (const r of [pipec('--version'), await inProcess('-V')]) {
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, `pipec ${pkgVersion}\n`);
      assert.equal(r.err, '');
    }
  });

  it('a mistyped command or option gets the closest one; an option of another command says whose it is', async () => {
    assertUsageError(pipec('chek', 'pipelines/quickstart.pipe'), /^pipec: unknown command `chek`; did you mean `check`\?$/, 'pipec --help');
    assertUsageError(await inProcess('frobnicate'), /^pipec: unknown command `frobnicate`$/, 'pipec --help');
    assertUsageError(pipec('run', 'pipelines/quickstart.pipe', '--outt', 'runs/x'), /^pipec: `run` has no option --outt; did you mean --out\?$/, 'pipec run --help');
    assertUsageError(await inProcess('run', 'x.pipe', '--stop-aftre', '3'), /did you mean --stop-after\?$/, 'pipec run --help');
    assertUsageError(await inProcess('check', '--bogus', 'x.pipe'), /^pipec: `check` has no option --bogus$/, 'pipec check --help');
    assertUsageError(pipec('check', '--dot', 'pipelines/quickstart.pipe'), /^pipec: `check` has no option --dot \(graph takes it\)$/, 'pipec check --help');
    assertUsageError(await inProcess('graph', '-o', 'x.json', 'pipelines/quickstart.pipe'), /^pipec: `graph` has no option -o \(compile, eval, export, prepare take it\)$/, 'pipec graph --help');
    assertUsageError(await inProcess('run', 'x.pipe', '--backend', 'wsam'), /^pipec: --backend must be one of auto, .*, got wsam; did you mean wasm\?$/, 'pipec run --help');
    assertUsageError(await inProcess('export', 'x.pipe', '--target', 'torhc', '-o', 'out'), /got torhc; did you mean torch\?$/, 'pipec export --help');
    assertUsageError(await inProcess('check', 'x.pipe', '--format', 'jsno'), /did you mean json\?$/, 'pipec check --help');
    assertUsageError(await inProcess('run', '--version'), /^pipec: `run` has no option --version \(it is `pipec --version`, without a command\)$/, 'pipec run --help');
  });

  it('a missing value or a value given to a switch is a usage error, in pipec\'s words', async () => {
    assertUsageError(await inProcess('run', 'x.pipe', '--out'), /^pipec: --out needs a value: --out DIR$/, 'pipec run --help');
    assertUsageError(await inProcess('run', 'x.pipe', '--out', '--resume'), /^pipec: --out needs a value: --out DIR \(a value that starts with "-" is written --out=VALUE\)$/, 'pipec run --help');
    assertUsageError(await inProcess('check', '--data=yes', 'x.pipe'), /^pipec: --data takes no value \(got "yes"\)$/, 'pipec check --help');
    assertUsageError(await inProcess('compile', 'pipelines/quickstart.pipe'), /^pipec: compile needs -o OUT\.json$/, 'pipec compile --help');
    assertUsageError(await inProcess('check', 'no/such.pipe'), /^pipec: cannot read no\/such\.pipe: no such file$/, 'pipec check --help');
  });

  it('the parser accepts every option a command\'s help lists, and only those', () => {
    const allNames = new Set(COMMANDS.flatMap((c) => optionsOf(c).map((o) => o.name)));
    for (const cmd of COMMANDS) {
      const own = optionsOf(cmd);
      for (const o of own) {
        const args = [cmd.name, `--${o.name}`, ...(o.value ? [o.choices?.[0] ?? 'v'] : [])];
        assert.doesNotThrow(() => parseCommandLine(args), `${args.join(' ')}`);
        if (o.short) assert.doesNotThrow(() => parseCommandLine([cmd.name, `-${o.short}`, ...(o.value ? ['v'] : [])]), `${cmd.name} -${o.short}`);
      }
      for (const name of allNames) {
        if (own.some((o) => o.name === name)) continue;
        assert.throws(() => parseCommandLine([cmd.name, `--${name}=1`]), new RegExp(`\`${cmd.name}\` has no option --${name}`), `${cmd.name} --${name}`);
      }
    }
    // `data` is check's switch and eval's dataset
    assert.equal(parseCommandLine(['check', '--data', 'a.pipe']).values.data, true);
    assert.deepEqual(parseCommandLine(['eval', 'a.pipe', '--data', 'captions']).values.data, 'captions');
  });

  it('lists the same backends and export targets as the runtime', () => {
    assert.deepEqual([...BACKEND_CHOICES], [...BACKEND_NAMES]);
    assert.deepEqual([...EXPORT_TARGETS], [...RUNTIME_EXPORT_TARGETS]);
  });

  it('docs/language.md §13 names every command', () => {
    const doc = fs.readFileSync(repo('docs/language.md'), 'utf8');
    const cli = doc.slice(doc.indexOf('## 13. The CLI'), doc.indexOf('## 14.'));
    for (const cmd of COMMANDS) assert.match(cli, new RegExp(`\\npipec ${cmd.name}\\b`), `§13 does not list pipec ${cmd.name}`);
    assert.doesNotMatch(cli, /not in this build/);
  });
});
