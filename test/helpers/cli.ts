// Runs the pipec CLI as a child process, as a user would (bin/pipec.js with this Node), without colours.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { repo } from '../paths.js';

export interface PipecOptions {
  env?: Record<string, string>;
  cwd?: string;
  timeout?: number;
}

export function pipec(args: string[], o: PipecOptions = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [repo('bin/pipec.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...o.env },
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(o.timeout ? { timeout: o.timeout } : {}),
  });
}
