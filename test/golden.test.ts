// Golden diagnostics: every case under test/golden/cases is checked and its diagnostics, rendered as
// `path(line,col): error PIPExxxx: message` with the source line and underline, must equal
// test/golden/baselines/<case>.errors.txt. A case is a .pipe file, or a folder whose main.pipe is the
// entry (for cases with checkpoints, custom modules or run configs). Baselines are reviewed files: a
// normal run only reads them, and a case without one fails. `npm run golden:update` (UPDATE_GOLDEN=1)
// writes them; review the diff like code.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { M } from '../compiler/diagnostics/catalogue.js';
import { renderAll } from '../compiler/diagnostics/render.js';
import { compile } from '../compiler/service/service.js';
import { makeGoldenFixtures } from './golden/fixtures.js';
import { REPO_ROOT, repo } from './paths.js';

const CASES = repo('test/golden/cases');
const BASELINES = repo('test/golden/baselines');
const UPDATE = process.env.UPDATE_GOLDEN === '1';

interface Case {
  name: string;
  entry: string; // relative to the repo root, as it appears in baselines
  configs: string[];
  sets: string[];
}

function listCases(): Case[] {
  return fs
    .readdirSync(CASES)
    .sort()
    .flatMap((entry): Case[] => {
      const full = path.join(CASES, entry);
      if (fs.statSync(full).isDirectory()) {
        const rel = `test/golden/cases/${entry}`;
        const configs = fs.existsSync(path.join(full, 'run.yaml')) ? [`${rel}/run.yaml`] : [];
        const setsFile = path.join(full, 'set.txt');
        const sets = fs.existsSync(setsFile) ? fs.readFileSync(setsFile, 'utf8').split('\n').filter(Boolean) : [];
        return [{ name: entry, entry: `${rel}/main.pipe`, configs, sets }];
      }
      return entry.endsWith('.pipe') ? [{ name: entry.slice(0, -5), entry: `test/golden/cases/${entry}`, configs: [], sets: [] }] : [];
    });
}

export function runCase(c: Case): { text: string; codes: string[] } {
  const r = compile({ file: c.entry, cwd: REPO_ROOT, configFiles: c.configs, sets: c.sets, lower: false });
  const body = renderAll(r.diagnostics, r.sources, { style: 'baseline' });
  return { text: `${body}${body ? '\n' : ''}`, codes: r.diagnostics.map((d) => d.code) };
}

describe('golden diagnostics', () => {
  before(() => makeGoldenFixtures());
  const cases = listCases();
  let covered: Set<string> | undefined;
  /** Every code the cases report (computed once, by whichever test asks first). */
  const codesCovered = () => (covered ??= new Set(cases.flatMap((c) => runCase(c).codes)));

  for (const c of cases) {
    it(c.name, () => {
      const { text, codes } = runCase(c);
      const file = path.join(BASELINES, `${c.name}.errors.txt`);
      if (UPDATE) fs.writeFileSync(file, text);
      assert.ok(fs.existsSync(file), `no baseline ${path.relative(REPO_ROOT, file)}: npm run golden:update writes it; review it and commit it`);
      assert.equal(text, fs.readFileSync(file, 'utf8'), `diagnostics of ${c.entry} differ from ${path.relative(REPO_ROOT, file)} (npm run golden:update refreshes)`);
      // notes allowed: no safetensors (PIPE6012), the checkpoint layout detected (PIPE6013)
      if (c.name.startsWith('ok-')) assert.equal(codes.filter((x) => x.startsWith('PIPE') && x !== 'PIPE6012' && x !== 'PIPE6013').length, 0, 'an ok- case must be clean');
      else assert.ok(codes.length > 0, 'an error case must report something');
    });
  }

  it('every baseline belongs to a case', () => {
    const names = new Set(cases.map((c) => c.name));
    for (const f of fs.readdirSync(BASELINES)) assert.ok(names.has(f.replace(/\.errors\.txt$/, '')), `stale baseline ${f}`);
  });

  it('covers at least 30 distinct diagnostic codes', () => {
    const seen = codesCovered();
    assert.ok(seen.size >= 30, `only ${seen.size} codes covered: ${[...seen].sort().join(' ')}`);
  });

  it("covers every 'must catch' item of LANGUAGE.md", () => {
    const seen = codesCovered();
    const mustCatch = [
      M.UnknownName, M.UnknownComponent, M.UnknownConstructor, M.DuplicateDeclaration, M.UnknownParameter, M.MissingParameter,
      M.TypeMismatch, M.AfterCycle, M.ImportNotFound, M.FlowShapeMismatch, M.ConstraintFailed, M.ImageTokensExceedLength,
      M.LengthExceedsContext, M.ConfigMismatch, M.TensorShapeMismatch, M.TrainedAndFrozen, M.NeitherTrainedNorFrozen,
      M.TrainsNothing, M.HandOffShapeChanged, M.CustomModuleNotFound, M.CustomClassNotExported, M.CustomNotTrusted, M.DoesNotFit,
    ];
    const missing = mustCatch.filter((m) => !seen.has(m.code)).map((m) => m.code);
    assert.deepEqual(missing, [], `no golden case for ${missing.join(', ')}`);
  });
});
