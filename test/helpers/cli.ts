// Runs the pipec CLI as a child process, as a user would (bin/pipec.js with this Node), without colours,
// its temporary files under the tests' temp root. The one way tests start pipec: `pipec` waits for it,
// `startPipec` returns the running process (to kill it, or to talk to it over stdio).
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns, type StdioOptions } from 'node:child_process';
import { repo } from '../paths.js';
import { childEnv } from './tmp.js';

export interface PipecOptions {
  env?: Record<string, string>;
  cwd?: string;
  timeout?: number;
}

const command = (args: string[]) => [repo('bin/pipec.js'), ...args];
const env = (o: PipecOptions) => childEnv({ NO_COLOR: '1', ...o.env });

export function pipec(args: string[], o: PipecOptions = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, command(args), {
    encoding: 'utf8',
    env: env(o),
    maxBuffer: 64 * 1024 * 1024,
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(o.timeout ? { timeout: o.timeout } : {}),
  });
}

export function startPipec(args: string[], o: PipecOptions & { stdio?: StdioOptions } = {}): ChildProcess {
  return spawn(process.execPath, command(args), { env: env(o), stdio: o.stdio ?? 'pipe', ...(o.cwd ? { cwd: o.cwd } : {}) });
}
