// The two suites: npm test runs .mocharc.json's files (the unit suites, test/*.test.ts) and npm run
// test:e2e runs .mocharc.e2e.json's (test/e2e/*.test.ts). A test file that neither picks up would never
// run anywhere, CI included; one that both pick up would run twice.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repo } from './paths.js';

interface MochaConfig {
  spec: string[];
  require: string[];
}

const read = (file: string) => JSON.parse(fs.readFileSync(repo(file), 'utf8')) as MochaConfig;

/** A spec pattern of the configurations (only `*`, within one folder) as a regular expression. */
function patternOf(spec: string): RegExp {
  assert.ok(!spec.includes('**') && !/[?[{]/.test(spec), `${spec}: only * within a folder is understood here`);
  return new RegExp(`^${spec.split('*').map((s) => s.replace(/[.+^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);
}

/** Every test file under test/, as its compiled path (dist/test/...test.js). */
function compiledTestFiles(dir = repo('test')): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return compiledTestFiles(full);
    return e.name.endsWith('.test.ts') ? [path.join('dist', path.relative(repo('.'), full)).split(path.sep).join('/').replace(/\.ts$/, '.js')] : [];
  });
}

describe('test suites: unit (npm test) and end-to-end (npm run test:e2e)', () => {
  const suites = { unit: read('.mocharc.json'), e2e: read('.mocharc.e2e.json') };

  it('every test file is in exactly one of the two suites', () => {
    const files = compiledTestFiles();
    assert.ok(files.length > 40, `found ${files.length} test files`);
    const wrong = files.flatMap((f) => {
      const in_ = Object.entries(suites).filter(([, c]) => c.spec.some((s) => patternOf(s).test(f))).map(([n]) => n);
      return in_.length === 1 ? [] : [`${f}: ${in_.length ? `in ${in_.join(' and ')}` : 'in no suite'}`];
    });
    assert.deepEqual(wrong, []);
    assert.ok(files.some((f) => f.startsWith('dist/test/e2e/')), 'the end-to-end suite has files');
  });

  it('both load the temporary-folder and quiet-output hooks; npm run test:e2e names its configuration', () => {
    for (const c of Object.values(suites)) assert.deepEqual(c.require, ['dist/test/helpers/tmp.js', 'dist/test/helpers/quiet.js']);
    const scripts = (JSON.parse(fs.readFileSync(repo('package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    assert.match(scripts['test:e2e']!, /mocha --config \.mocharc\.e2e\.json/);
    assert.doesNotMatch(scripts['test']!, /--config/);
  });
});
