// A small LSP client for tests: starts the server as a separate process and speaks JSON-RPC over its
// stdio with Content-Length framing, as an editor does.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { startPipec } from './cli.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

export class LspClient {
  private readonly proc: ChildProcessWithoutNullStreams;
  private buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners: ((method: string, params: Json) => void)[] = [];
  /** Latest diagnostics per URI. */
  readonly diagnostics = new Map<string, Json[]>();
  stderr = '';

  constructor() {
    this.proc = startPipec(['lsp', '--stdio']) as ChildProcessWithoutNullStreams;
    this.proc.stdout.on('data', (chunk: Buffer) => this.onData(chunk));
    this.proc.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const headerEnd = this.buffer.indexOf('\r\n\r\n');
      if (headerEnd < 0) return;
      const length = Number(/Content-Length: (\d+)/i.exec(this.buffer.subarray(0, headerEnd).toString())?.[1]);
      if (this.buffer.length < headerEnd + 4 + length) return;
      const body = JSON.parse(this.buffer.subarray(headerEnd + 4, headerEnd + 4 + length).toString('utf8')) as Json;
      this.buffer = this.buffer.subarray(headerEnd + 4 + length);
      if (typeof body.id === 'number' && ('result' in body || 'error' in body)) {
        const p = this.pending.get(body.id);
        this.pending.delete(body.id);
        if (body.error) p?.reject(new Error(JSON.stringify(body.error)));
        else p?.resolve(body.result);
      } else if (typeof body.method === 'string') {
        if (body.method === 'textDocument/publishDiagnostics') {
          const params = body.params as { uri: string; diagnostics: Json[] };
          this.diagnostics.set(params.uri, params.diagnostics);
        }
        if (typeof body.id === 'number') this.send({ jsonrpc: '2.0', id: body.id, result: null }); // server -> client requests
        for (const l of this.listeners) l(body.method, body.params as Json);
      }
    }
  }

  private send(msg: Json): void {
    const text = JSON.stringify(msg);
    this.proc.stdin.write(`Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  }

  request<T = unknown>(method: string, params: unknown): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.send({ jsonrpc: '2.0', id, method, params });
    });
  }

  notify(method: string, params: unknown): void {
    this.send({ jsonrpc: '2.0', method, params });
  }

  /** Resolves with the next publishDiagnostics for `uri`. */
  nextDiagnostics(uri: string): Promise<Json[]> {
    return new Promise((resolve) => {
      const l = (method: string, params: Json) => {
        if (method === 'textDocument/publishDiagnostics' && params.uri === uri) {
          this.listeners.splice(this.listeners.indexOf(l), 1);
          resolve(params.diagnostics as Json[]);
        }
      };
      this.listeners.push(l);
    });
  }

  async initialize(rootUri: string): Promise<Json> {
    const r = await this.request<Json>('initialize', { processId: process.pid, rootUri, capabilities: {} });
    this.notify('initialized', {});
    return r;
  }

  async shutdown(): Promise<number | null> {
    await this.request('shutdown', null);
    this.notify('exit', null);
    return new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }
}
