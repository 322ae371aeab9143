// pipec for VS Code: the grammar and language configuration are declarative (package.json); this file
// starts the language server, `pipec lsp --stdio`, and connects it to `.pipe` documents.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

/** @type {LanguageClient | undefined} */
let client;
/** @type {vscode.OutputChannel | undefined} */
let outputChannel;

const isWindows = process.platform === 'win32';

function firstWorkspaceFolder() {
  const folders = vscode.workspace.workspaceFolders;
  return folders && folders.length > 0 && folders[0].uri.scheme === 'file' ? folders[0].uri.fsPath : undefined;
}

/** `~`, `${workspaceFolder}` and a relative path (against the first workspace folder) in the setting. */
function expandPath(value) {
  const root = firstWorkspaceFolder();
  let p = value.trim();
  if (p === '~' || p.startsWith('~/') || p.startsWith('~\\')) p = path.join(os.homedir(), p.slice(1));
  if (root) p = p.replace(/\$\{workspaceFolder\}/g, root);
  if (!path.isAbsolute(p) && root && (p.includes('/') || p.includes('\\'))) p = path.resolve(root, p);
  return p;
}

/**
 * Where `pipec` comes from: the `pipec.serverPath` setting; else the workspace's own install
 * (node_modules/.bin/pipec in any workspace folder); else `pipec` on PATH.
 */
function resolvePipec() {
  const configured = vscode.workspace.getConfiguration('pipec').get('serverPath', '');
  if (typeof configured === 'string' && configured.trim() !== '') return { command: expandPath(configured), source: 'the pipec.serverPath setting' };
  for (const folder of vscode.workspace.workspaceFolders || []) {
    if (folder.uri.scheme !== 'file') continue;
    const bin = path.join(folder.uri.fsPath, 'node_modules', '.bin', isWindows ? 'pipec.cmd' : 'pipec');
    if (fs.existsSync(bin)) return { command: bin, source: `the workspace folder ${folder.name}` };
  }
  return { command: isWindows ? 'pipec.cmd' : 'pipec', source: 'PATH' };
}

function createClient() {
  const { command, source } = resolvePipec();
  // With TransportKind.stdio the client appends `--stdio` itself: the server runs as `pipec lsp --stdio`.
  /** @type {import('vscode-languageclient/node').Executable} */
  const executable = {
    command,
    args: ['lsp'],
    transport: TransportKind.stdio,
    // A .cmd shim (Windows npm installs) can only be started through a shell.
    options: { cwd: firstWorkspaceFolder(), shell: isWindows && /\.(cmd|bat)$/i.test(command) },
  };
  outputChannel = outputChannel || vscode.window.createOutputChannel('pipec');
  outputChannel.appendLine(`Starting ${command} ${[...executable.args, '--stdio'].join(' ')} (from ${source})`);
  return new LanguageClient(
    'pipec',
    'pipec language server',
    { run: executable, debug: executable },
    {
      documentSelector: [
        { scheme: 'file', language: 'pipe' },
        { scheme: 'untitled', language: 'pipe' },
      ],
      outputChannel,
      synchronize: {
        // Imported files and checkpoint directories change outside the editor too.
        fileEvents: vscode.workspace.createFileSystemWatcher('**/*.pipe'),
      },
    },
  );
}

async function startClient() {
  client = createClient();
  try {
    await client.start();
  } catch (e) {
    const message = e && e.message ? e.message : String(e);
    const { command } = resolvePipec();
    client = undefined;
    const choice = await vscode.window.showErrorMessage(
      `pipec: could not start the language server (${command} lsp --stdio): ${message}. Add pipec to the workspace (npm install --save-dev /path/to/pipec), put it on PATH (npm link in a pipec checkout) or set pipec.serverPath.`,
      'Open Settings',
    );
    if (choice === 'Open Settings') await vscode.commands.executeCommand('workbench.action.openSettings', 'pipec.serverPath');
  }
}

async function stopClient() {
  const c = client;
  client = undefined;
  if (c) {
    try {
      await c.stop();
    } catch {
      // already stopped (or never started): nothing to undo
    }
  }
}

async function restartClient() {
  await stopClient();
  await startClient();
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  outputChannel = vscode.window.createOutputChannel('pipec');
  context.subscriptions.push(
    outputChannel,
    vscode.commands.registerCommand('pipec.restartServer', restartClient),
    vscode.commands.registerCommand('pipec.showOutput', () => outputChannel && outputChannel.show(true)),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('pipec.serverPath')) void restartClient();
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(() => {
      // A folder with its own node_modules/.bin/pipec may have come or gone.
      if (!vscode.workspace.getConfiguration('pipec').get('serverPath', '')) void restartClient();
    }),
  );
  await startClient();
}

function deactivate() {
  return stopClient();
}

// resolvePipec is exported for test/e2e/vscode-package.test.ts.
module.exports = { activate, deactivate, resolvePipec };
