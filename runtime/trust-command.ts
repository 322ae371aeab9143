// `pipec trust FILE.pipe [--revoke]`: records (or removes) the user's trust in the custom modules a
// program names, keyed by the content hash of each module's files (runtime/trust.ts). It reads the
// files as the checker did and never runs them; it prints exactly what it trusted.
import * as path from 'node:path';
import { shortHash } from '../compiler/check/code-files.js';
import { tsModuleClosure, resolveModule } from '../compiler/check/custom-module.js';
import type { Graph } from '../compiler/ir/graph.js';
import { diskFs, isTrusted, recordTrust, revokeTrust, trustDir, trustRecordFor } from './trust.js';
import { contentHash } from '../compiler/check/code-files.js';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export function trustCommand(graph: Graph, programFile: string, o: { revoke?: boolean }, io: Io): number {
  const root = path.dirname(path.resolve(programFile));
  let count = 0;
  for (const m of graph.models)
    for (const c of m.components) {
      const spec = c.custom;
      if (!spec?.module || !spec.hash) continue;
      count++;
      const entry = resolveModule(path.resolve(root, spec.module), diskFs)!;
      const { files } = tsModuleClosure(entry, root, diskFs);
      const hash = contentHash(files);
      if (hash !== spec.hash) throw new Error(`the files of ${spec.module} changed while pipec read them; run pipec trust again`);
      const list = files.map((f) => `    ${f.rel}`).join('\n');
      if (o.revoke) {
        const had = revokeTrust(hash);
        io.out(`${had ? 'revoked' : 'was not trusted'}: ${spec.class} (${spec.module}), content ${shortHash(hash)}\n`);
        continue;
      }
      const already = isTrusted(hash);
      const file = recordTrust(trustRecordFor(c, files, hash, programFile));
      io.out(`${already ? 'already trusted' : 'trusted'}: ${spec.class} (${spec.module}), content ${hash}\n${list}\n  recorded in ${file}\n`);
    }
  if (!count) io.err(`${programFile} names no custom module to trust\n`);
  else if (!o.revoke) io.err(`pipec will run these files while their content is unchanged; any edit needs \`pipec trust\` again (records: ${trustDir()})\n`);
  return 0;
}
