// Small helpers shared by the backend probes: whether an optional package is installed, and the first
// line of an import error (native addons throw multi-line messages).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function resolvable(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

export function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0]!.slice(0, 200);
}
