// `pipec lsp --stdio`: the Language Server Protocol front of the same compiler service the CLI uses.
// Diagnostics are published on open and on every change, for the document and for the user files it
// imports; navigation, completion, hover, outline, semantic tokens, inlay hints, quick fixes and
// formatting all read the same checked Program.
import {
  CodeActionKind,
  createConnection,
  ProposedFeatures,
  TextDocumentSyncKind,
  type CodeAction,
  type Connection,
  type Diagnostic as LspDiagnostic,
  type InitializeResult,
  type Location,
  type TextEdit,
} from 'vscode-languageserver/node.js';
import type { Fix } from '../diagnostics/diagnostic.js';
import { format } from '../format/format.js';
import { complete } from './completion.js';
import { hoverFor, nameUseHover } from './hover.js';
import { SymbolIndex } from './navigation.js';
import { documentSymbols, foldingRanges, inlayHints, semanticTokens, TOKEN_TYPES } from './outline.js';
import { pathToUri, toLspDiagnostic, toLspRange, uriToPath, Workspace } from './workspace.js';

export function startServer(connection: Connection = createConnection(ProposedFeatures.all, process.stdin, process.stdout)): Connection {
  const ws = new Workspace();
  const indexes = new Map<string, SymbolIndex>();
  /** Files we last published diagnostics for, per entry document, to clear them when they go away. */
  const published = new Map<string, Set<string>>();

  const index = (uri: string): SymbolIndex | undefined => {
    let ix = indexes.get(uri);
    const check = ws.check(uri);
    if (!ix && check) indexes.set(uri, (ix = new SymbolIndex(check)));
    return ix;
  };

  const validate = (uri: string): void => {
    const r = ws.compile(uri);
    if (!r) return;
    const open = new Set(ws.openPaths());
    const self = uriToPath(uri);
    const byFile = new Map<string, LspDiagnostic[]>([[self, []]]);
    for (const d of r.diagnostics) {
      const f = d.range.file;
      // Another open document publishes its own diagnostics; the standard library is not the user's to fix.
      if (f !== self && (open.has(f) || r.check?.program.files.find((x) => x.path === f)?.isStdlib)) continue;
      if (!byFile.has(f)) byFile.set(f, []);
      byFile.get(f)!.push(toLspDiagnostic(d));
    }
    const before = published.get(uri) ?? new Set();
    for (const f of before) if (!byFile.has(f) && !open.has(f)) void connection.sendDiagnostics({ uri: pathToUri(f), diagnostics: [] });
    published.set(uri, new Set(byFile.keys()));
    for (const [f, diags] of byFile) void connection.sendDiagnostics({ uri: pathToUri(f), diagnostics: diags });
  };

  const revalidateAll = (): void => {
    ws.invalidateAll();
    indexes.clear();
    for (const p of ws.openPaths()) validate(pathToUri(p));
  };

  connection.onInitialize(
    (): InitializeResult => ({
      capabilities: {
        textDocumentSync: { openClose: true, change: TextDocumentSyncKind.Full },
        completionProvider: { triggerCharacters: ['.', ':', '"', '(', ' ', '['] },
        hoverProvider: true,
        definitionProvider: true,
        referencesProvider: true,
        renameProvider: { prepareProvider: true },
        documentSymbolProvider: true,
        foldingRangeProvider: true,
        semanticTokensProvider: { legend: { tokenTypes: [...TOKEN_TYPES], tokenModifiers: [] }, full: true },
        inlayHintProvider: true,
        codeActionProvider: { codeActionKinds: [CodeActionKind.QuickFix] },
        documentFormattingProvider: true,
      },
      serverInfo: { name: 'pipec' },
    }),
  );

  connection.onDidOpenTextDocument((p) => {
    ws.open(p.textDocument.uri, p.textDocument.text);
    revalidateAll();
  });
  connection.onDidChangeTextDocument((p) => {
    const last = p.contentChanges[p.contentChanges.length - 1];
    if (!last || 'range' in last) return; // we ask for full-text sync
    ws.open(p.textDocument.uri, last.text);
    revalidateAll();
  });
  connection.onDidCloseTextDocument((p) => {
    ws.close(p.textDocument.uri);
    void connection.sendDiagnostics({ uri: p.textDocument.uri, diagnostics: [] });
    published.delete(p.textDocument.uri);
    revalidateAll();
  });

  const symbolAt = (uri: string, pos: { line: number; character: number }) => index(uri)?.at(uriToPath(uri), pos.line + 1, pos.character + 1);
  const locations = (uri: string, pos: { line: number; character: number }, includeDecl: boolean): Location[] => {
    const hit = symbolAt(uri, pos);
    if (!hit) return [];
    const ranges = includeDecl ? [hit.sym.def, ...hit.sym.refs] : hit.sym.refs;
    return ranges.map((r) => ({ uri: pathToUri(r.file), range: toLspRange(r) }));
  };

  const useAt = (uri: string, pos: { line: number; character: number }) => index(uri)?.useAt(uriToPath(uri), pos.line + 1, pos.character + 1);

  connection.onDefinition((p) => {
    const hit = symbolAt(p.textDocument.uri, p.position);
    if (hit) return { uri: pathToUri(hit.sym.def.file), range: toLspRange(hit.sym.def) };
    // A parameter or preset is declared in its constructor's signature; a stage field and `custom` nowhere.
    const use = useAt(p.textDocument.uri, p.position);
    const def = use?.kind === 'param' ? use.param.name.range : use?.kind === 'preset' ? use.preset.name.range : undefined;
    return def ? { uri: pathToUri(def.file), range: toLspRange(def) } : null;
  });
  connection.onReferences((p) => locations(p.textDocument.uri, p.position, p.context.includeDeclaration));

  const renamable = (uri: string, pos: { line: number; character: number }) => {
    const hit = symbolAt(uri, pos);
    if (!hit) return undefined;
    const def = ws.check(uri)?.program.files.find((f) => f.path === hit.sym.def.file);
    return def && !def.isStdlib ? hit : undefined;
  };
  connection.onPrepareRename((p) => {
    const hit = renamable(p.textDocument.uri, p.position);
    return hit ? toLspRange(hit.range) : null;
  });
  connection.onRenameRequest((p) => {
    const hit = renamable(p.textDocument.uri, p.position);
    if (!hit || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(p.newName)) return null;
    const changes: Record<string, TextEdit[]> = {};
    for (const r of [hit.sym.def, ...hit.sym.refs]) {
      const uri = pathToUri(r.file);
      // A template named in a string keeps its quotes.
      const quoted = r.end.offset - r.start.offset === hit.sym.name.length + 2;
      (changes[uri] ??= []).push({ range: toLspRange(r), newText: quoted ? JSON.stringify(p.newName) : p.newName });
    }
    return { changes };
  });

  connection.onHover((p) => {
    const check = ws.check(p.textDocument.uri);
    if (!check) return null;
    const hit = symbolAt(p.textDocument.uri, p.position);
    const use = hit ? undefined : useAt(p.textDocument.uri, p.position);
    const value = hit ? hoverFor(hit.sym, check) : use ? nameUseHover(use, check) : undefined;
    const range = hit?.range ?? use?.range;
    return value && range ? { contents: { kind: 'markdown', value }, range: toLspRange(range) } : null;
  });

  connection.onCompletion((p) => {
    const text = ws.text(p.textDocument.uri);
    if (text === undefined) return [];
    const lines = text.split('\n');
    let offset = 0;
    for (let i = 0; i < p.position.line && i < lines.length; i++) offset += lines[i].length + 1;
    offset += p.position.character;
    return complete(text, offset, ws.check(p.textDocument.uri), uriToPath(p.textDocument.uri));
  });

  const entryAst = (uri: string) => ws.check(uri)?.program.entry.ast;
  connection.onDocumentSymbol((p) => {
    const ast = entryAst(p.textDocument.uri);
    return ast ? documentSymbols(ast) : [];
  });
  connection.onFoldingRanges((p) => {
    const ast = entryAst(p.textDocument.uri);
    return ast ? foldingRanges(ast, ws.text(p.textDocument.uri) ?? '') : [];
  });
  connection.languages.semanticTokens.on((p) => {
    const ast = entryAst(p.textDocument.uri);
    return { data: ast ? semanticTokens(ast, ws.text(p.textDocument.uri) ?? '') : [] };
  });
  connection.languages.inlayHint.on((p) => {
    const ast = entryAst(p.textDocument.uri);
    return ast ? inlayHints(ast, ws.check(p.textDocument.uri)) : [];
  });

  connection.onCodeAction((p) => {
    const actions: CodeAction[] = [];
    for (const d of p.context.diagnostics) {
      const fixes = (d.data as { fixes?: Fix[] } | undefined)?.fixes ?? [];
      for (const f of fixes) {
        actions.push({
          title: f.title,
          kind: CodeActionKind.QuickFix,
          diagnostics: [d],
          isPreferred: fixes.length === 1,
          edit: { changes: { [pathToUri(f.range.file)]: [{ range: toLspRange(f.range), newText: f.newText }] } },
        });
      }
    }
    return actions;
  });

  connection.onDocumentFormatting((p) => {
    const text = ws.text(p.textDocument.uri);
    if (text === undefined) return [];
    const r = format(text);
    if ('error' in r || !r.changed) return [];
    const lines = text.split('\n');
    return [{ range: { start: { line: 0, character: 0 }, end: { line: lines.length, character: 0 } }, newText: r.text }];
  });

  connection.listen();
  return connection;
}
