// Where tests find the repository: compiled tests run from dist/test/.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const repo = (...parts: string[]) => path.join(REPO_ROOT, ...parts);
