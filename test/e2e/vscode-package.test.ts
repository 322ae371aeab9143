// The VS Code extension as it ships: `vsce package` makes the .vsix a user installs, and it must hold the
// grammar, the language configuration, the client (extension.js) and the language-client library that
// extension.js requires, so that the installed extension starts `pipec lsp --stdio` with nothing else
// installed. vsce works offline here: it lists editors/vscode/node_modules with `npm list` and zips.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { unavailable } from '../helpers/required.js';
import { childEnv, tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const EXT = repo('editors/vscode');

/** A zip's entries by name, read from its central directory (a .vsix is a zip; Node has no zip reader). */
function readZip(file: string): Map<string, () => Buffer> {
  const zip = fs.readFileSync(file);
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06])); // end of central directory
  assert.ok(eocd >= 0, `${file} is not a zip`);
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const entries = new Map<string, () => Buffer>();
  for (let i = 0; i < count; i++) {
    assert.equal(zip.readUInt32LE(at), 0x02014b50, 'central directory entry');
    const method = zip.readUInt16LE(at + 10);
    const size = zip.readUInt32LE(at + 20);
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLen);
    entries.set(name, () => {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + size);
      return method === 0 ? data : zlib.inflateRawSync(data);
    });
    at += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

describe('VS Code extension package (.vsix)', function () {
  this.timeout(180_000);
  let entries: Map<string, () => Buffer>;

  before(function () {
    if (!fs.existsSync(path.join(EXT, 'node_modules', 'vscode-languageclient', 'package.json'))) {
      unavailable(this, "the extension's dependencies (editors/vscode/node_modules)", 'run `npm ci` in editors/vscode (.ci/run does)');
    }
    const vsce = repo('node_modules', '.bin', 'vsce');
    if (!fs.existsSync(vsce)) unavailable(this, '@vscode/vsce (a devDependency)', 'run `npm install`');
    const out = path.join(tmpDir('vsix'), 'pipec.vsix');
    // No prompt may wait for an answer (stdin closed) and npm may not reach a registry (offline). The
    // project has no public repository address yet: vsce is told so instead of being given an invented one.
    execFileSync(vsce, ['package', '--allow-missing-repository', '--out', out], { cwd: EXT, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv({ npm_config_offline: 'true' }) });
    entries = readZip(out);
  });

  it('holds the grammar and the language configuration the manifest names, byte for byte', () => {
    const manifest = JSON.parse(entries.get('extension/package.json')!().toString('utf8'));
    assert.equal(manifest.contributes.grammars[0].scopeName, 'source.pipe');
    for (const rel of [manifest.contributes.grammars[0].path, manifest.contributes.languages[0].configuration]) {
      const name = path.posix.join('extension', rel);
      assert.ok(entries.has(name), `${name} is not in the .vsix`);
      assert.deepEqual(entries.get(name)!(), fs.readFileSync(path.join(EXT, rel)));
    }
  });

  it('holds the client and every module it requires, so that it starts the language server once installed', () => {
    const manifest = JSON.parse(entries.get('extension/package.json')!().toString('utf8'));
    const main = path.posix.join('extension', manifest.main);
    assert.ok(entries.has(main), `${main} is not in the .vsix`);
    const client = entries.get(main)!().toString('utf8');
    assert.equal(client, fs.readFileSync(path.join(EXT, manifest.main), 'utf8'));
    assert.match(client, /args: \['lsp'\]/);
    const required = [...client.matchAll(/require\('([^']+)'\)/g)].map((m) => m[1]);
    assert.ok(required.includes('vscode-languageclient/node'), required.join(', '));
    for (const r of required) {
      if (r === 'vscode' || ['fs', 'os', 'path'].includes(r)) continue; // given by VS Code and Node
      // The client library and what it needs in turn are installed inside the .vsix.
      assert.ok(entries.has(`extension/node_modules/${r}.js`) || entries.has(`extension/node_modules/${r}/package.json`), `${r} is not in the .vsix`);
      // ... and so is every package it depends on, transitively.
      const seen = new Set<string>();
      for (const queue = [r.split('/')[0]]; queue.length; ) {
        const pkg = queue.pop()!;
        if (seen.has(pkg)) continue;
        seen.add(pkg);
        const manifestEntry = entries.get(`extension/node_modules/${pkg}/package.json`);
        assert.ok(manifestEntry, `${pkg} (needed by ${r}) is not in the .vsix`);
        queue.push(...Object.keys(JSON.parse(manifestEntry().toString('utf8')).dependencies ?? {}));
      }
      assert.ok(seen.has('vscode-jsonrpc'), [...seen].join(', '));
    }
    assert.ok(entries.has('extension.vsixmanifest'));
    assert.ok(![...entries.keys()].some((n) => n.endsWith('.vsix') || n.endsWith('package-lock.json')));
  });
});

describe('VS Code extension: which pipec it starts', () => {
  type Folder = { name: string; uri: { scheme: string; fsPath: string } };
  const state: { setting: string; folders: Folder[] } = { setting: '', folders: [] };
  // extension.js as VS Code loads it, with the `vscode` API reduced to what resolvePipec reads.
  const vscode = {
    workspace: {
      get workspaceFolders() {
        return state.folders;
      },
      getConfiguration: () => ({ get: (_key: string, fallback: string) => state.setting || fallback }),
    },
  };
  let resolvePipec: () => { command: string; source: string };

  before(() => {
    const require = createRequire(import.meta.url);
    const Module = require('node:module') as { _load: (request: string, ...rest: unknown[]) => unknown };
    const load = Module._load;
    Module._load = function (request: string, ...rest: unknown[]) {
      if (request === 'vscode') return vscode;
      if (request === 'vscode-languageclient/node') return { LanguageClient: class {}, TransportKind: { stdio: 0 } };
      return load.call(this, request, ...rest);
    };
    try {
      ({ resolvePipec } = require(path.join(EXT, 'extension.js')));
    } finally {
      Module._load = load;
    }
  });

  const folder = (dir: string): Folder => ({ name: path.basename(dir), uri: { scheme: 'file', fsPath: dir } });
  const bin = process.platform === 'win32' ? 'pipec.cmd' : 'pipec';

  it("takes the project's node_modules/.bin/pipec, else pipec on PATH", () => {
    const plain = tmpDir('plain-project');
    const local = tmpDir('project');
    fs.mkdirSync(path.join(local, 'node_modules', '.bin'), { recursive: true });
    fs.writeFileSync(path.join(local, 'node_modules', '.bin', bin), '');
    Object.assign(state, { setting: '', folders: [folder(plain), folder(local)] });
    assert.equal(resolvePipec().command, path.join(local, 'node_modules', '.bin', bin));
    Object.assign(state, { folders: [folder(plain)] });
    assert.deepEqual(resolvePipec(), { command: bin, source: 'PATH' });
  });

  it('takes the pipec.serverPath setting first, with ${workspaceFolder}, ~ and relative paths expanded', () => {
    const local = tmpDir('project');
    fs.mkdirSync(path.join(local, 'node_modules', '.bin'), { recursive: true });
    fs.writeFileSync(path.join(local, 'node_modules', '.bin', bin), '');
    const at = (setting: string) => (Object.assign(state, { setting, folders: [folder(local)] }), resolvePipec());
    assert.deepEqual(at('/opt/pipec/bin/pipec.js'), { command: '/opt/pipec/bin/pipec.js', source: 'the pipec.serverPath setting' });
    assert.equal(at('${workspaceFolder}/tools/pipec').command, path.join(local, 'tools', 'pipec'));
    assert.equal(at('~/pipec/bin/pipec.js').command, path.join(os.homedir(), 'pipec', 'bin', 'pipec.js'));
    assert.equal(at('../pipec/bin/pipec.js').command, path.resolve(local, '../pipec/bin/pipec.js'));
    assert.equal(at('my-pipec').command, 'my-pipec'); // a bare name is looked up on PATH
  });
});
