// The two halves of a custom component as the checker reads them (compiler/check/custom*.ts), without
// running either: the Python package's parse (classes, relative imports in their forms, optional ones,
// sub-packages, star imports, config_class / model_type / the MoE block), what each command needs of a
// missing half (located), the graph's record of both halves, and the content hash.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { contentHash, maskSource } from '../compiler/check/code-files.js';
import { importSpecifiers } from '../compiler/check/custom-module.js';
import { pythonClassInfo, readPythonPackage } from '../compiler/check/custom-python.js';
import { compile } from '../compiler/service/service.js';
import { diskFs } from '../runtime/trust.js';
import { pipec } from './helpers/cli.js';
import { tmpDir } from './helpers/tmp.js';
import { repo } from './paths.js';

function writeTree(dir: string, files: Record<string, string>): void {
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
}

describe('custom components: the halves read as text', () => {
  it('masks comments and strings in place, so imports in them are not imports', () => {
    const ts = `// import x from './a.js'\nconst s = "from './b.js'";\nimport { y } from './c.js';\nexport * from "./d.js"; const m = await import('./e.js'); require('./f.cjs');\n/* export * from './g.js' */`;
    assert.equal(maskSource(ts, 'ts').length, ts.length);
    assert.deepEqual(importSpecifiers(ts).map((s) => s.spec), ['./c.js', './d.js', './e.js', './f.cjs']);
    const spec = importSpecifiers(ts)[0]!;
    assert.equal(ts.slice(spec.start, spec.end), './c.js');
    const py = `x = """\nfrom .nowhere import y\n"""\n# from .comment import z\nfrom .real import w\n`;
    assert.equal(maskSource(py, 'py').length, py.length);
    assert.match(maskSource(py, 'py'), /^from \.real import w$/m);
    assert.doesNotMatch(maskSource(py, 'py'), /nowhere|comment/);
  });

  it('reads a Python package: parenthesised and aliased imports, optional ones, sub-packages, star imports, config_class, model_type, the MoE block', () => {
    const dir = tmpDir('py-package');
    writeTree(dir, {
      'pkg/__init__.py': 'from .modeling_x import XForCausalLM\n',
      'pkg/configuration_x.py': 'from transformers import PretrainedConfig\n\nclass XConfig(PretrainedConfig):\n    model_type = "x_model"  # the type\n\n    def __init__(self, **kw):\n        model_type = "not this"\n        super().__init__(**kw)\n',
      'pkg/layers/__init__.py': '',
      'pkg/layers/moe.py': 'from torch import nn\nfrom ..configuration_x import (\n    XConfig,\n)\n\nclass XMoe(nn.Module):\n    def __init__(self, c):\n        super().__init__()\n        self.gate = nn.Linear(1, 1)\n',
      'pkg/common.py': 'def helper():\n    return 1\n\nCONSTANT, OTHER = 1, 2\n',
      'pkg/everything.py': 'from .common import *\n',
      'pkg/modeling_x.py': [
        'import torch',
        'from transformers import PreTrainedModel',
        'from .configuration_x import XConfig as Cfg',
        'from .layers.moe import XMoe',
        'from .everything import helper, CONSTANT',
        'from . import common',
        'try:',
        '    from .flash import fast  # optional',
        'except ImportError:',
        '    fast = None',
        '',
        'class XPreTrained(PreTrainedModel):',
        '    config_class = Cfg',
        '',
        'class XLayer(torch.nn.Module):',
        '    def __init__(self, c):',
        '        super().__init__()',
        '        self.block_sparse_moe = XMoe(c)',
        '',
        'class XForCausalLM(XPreTrained):',
        '    pass',
        '',
      ].join('\n'),
    });
    const pkg = readPythonPackage(path.join(dir, 'pkg', 'modeling_x.py'), dir, diskFs);
    assert.deepEqual(pkg.problems.map((p) => p.why), []);
    assert.deepEqual(pkg.files.map((f) => f.rel).sort(), ['pkg/__init__.py', 'pkg/common.py', 'pkg/configuration_x.py', 'pkg/everything.py', 'pkg/layers/__init__.py', 'pkg/layers/moe.py', 'pkg/modeling_x.py']);
    assert.deepEqual(pythonClassInfo(pkg, 'XForCausalLM'), { module: 'modeling_x', configClass: { module: 'configuration_x', name: 'XConfig' }, modelType: 'x_model', moeBlock: 'XMoe' });
    assert.equal(pythonClassInfo(pkg, 'Missing'), undefined);
    // a name the star import does not pass on, and a climb out of the package from the sub-package
    fs.appendFileSync(path.join(dir, 'pkg', 'modeling_x.py'), 'from .everything import nothing_here\n');
    fs.appendFileSync(path.join(dir, 'pkg', 'layers', 'moe.py'), 'from ...outside import z\n');
    const broken = readPythonPackage(path.join(dir, 'pkg', 'modeling_x.py'), dir, diskFs);
    assert.deepEqual(broken.problems.map((p) => p.why).sort(), [
      '`from ...outside import z` climbs above the package (the folder of the modeling file): a relative import must stay in it',
      '`from .everything import nothing_here`: everything.py does not define `nothing_here`',
    ]);
  });

  it('the content hash covers paths and text: a byte or a rename changes it', () => {
    const a = [{ abs: '/x/a.ts', rel: 'a.ts', text: 'export class A {}' }, { abs: '/x/b.ts', rel: 'b.ts', text: 'x' }];
    assert.match(contentHash(a), /^sha256:[0-9a-f]{64}$/);
    assert.equal(contentHash(a), contentHash([...a].reverse()));
    assert.notEqual(contentHash(a), contentHash([a[0]!, { ...a[1]!, text: 'y' }]));
    assert.notEqual(contentHash(a), contentHash([a[0]!, { ...a[1]!, rel: 'c.ts' }]));
    // the boundary between path and text is part of the hash
    assert.notEqual(contentHash([{ abs: '', rel: 'ab', text: 'c' }]), contentHash([{ abs: '', rel: 'a', text: 'bc' }]));
  });

  it('graph.json records both halves of tanuki-8x8b-vision: files, hashes, the config class, model_type, the MoE block and the checkpoint\'s own settings', () => {
    const g = compile({ file: repo('pipelines/tanuki-8x8b-vision.pipe'), lower: true }).graph!;
    const c = g.models[0]!.components.find((x) => x.name === 'lm')!.custom!;
    assert.equal(c.module, './models/tanuki/modeling_tanuki.ts');
    assert.deepEqual(c.files, ['models/tanuki/configuration_tanuki.ts', 'models/tanuki/modeling_tanuki.ts']);
    assert.match(c.hash!, /^sha256:[0-9a-f]{64}$/);
    const { hash, ...python } = c.python!;
    assert.match(hash, /^sha256:/);
    assert.deepEqual(python, {
      file: 'models/tanuki/modeling_tanuki.py', package: 'models/tanuki', module: 'modeling_tanuki',
      files: ['models/tanuki/configuration_tanuki.py', 'models/tanuki/modeling_tanuki.py'],
      config_class: { module: 'configuration_tanuki', name: 'TanukiConfig' }, model_type: 'tanuki', moe_block: 'TanukiSparseMoeBlock',
    });
    assert.equal(c.config?.['router_temperature'], 2);
  });

  it('what a command needs of a missing half is a located error: run needs `module:`, export needs `python:` (--custom-as-base does not)', () => {
    const dir = tmpDir('halves');
    fs.cpSync(repo('pipelines/models/tanuki'), path.join(dir, 'models', 'tanuki'), { recursive: true });
    const text = fs.readFileSync(repo('test/custom-moe/tiny-tanuki.pipe'), 'utf8');
    const pyOnly = path.join(dir, 'py-only.pipe'), tsOnly = path.join(dir, 'ts-only.pipe');
    fs.writeFileSync(pyOnly, text.replace('module: "./models/tanuki/modeling_tanuki.ts", ', ''));
    fs.writeFileSync(tsOnly, text.replace('python: "./models/tanuki/modeling_tanuki.py",', ''));
    const line = text.split('\n').findIndex((l) => l.includes('custom(')) + 1;
    let r = pipec(['run', pyOnly, '--out', path.join(dir, 'run'), '--trust']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`py-only\\.pipe:${line}:19 - error PIPE6035: custom component \`TanukiForCausalLM\` has no TypeScript half \\(\`module:\`\\), which \`pipec run\` \\(and eval, generate\\) runs`));
    r = pipec(['export', tsOnly, '--target', 'torch', '-o', path.join(dir, 'out')]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`ts-only\\.pipe:${line}:19 - error PIPE6036: custom component \`TanukiForCausalLM\` has no PyTorch half \\(\`python:\`\\), so the export cannot build its class`));
    assert.equal(pipec(['export', tsOnly, '--target', 'torch', '--custom-as-base', '-o', path.join(dir, 'out')]).status, 0);
    // each half alone checks clean, with a note of what cannot use it
    for (const [file, missing] of [[pyOnly, 'TypeScript'], [tsOnly, 'PyTorch']] as const) {
      const c = compile({ file, lower: false });
      assert.deepEqual(c.diagnostics.filter((d) => d.severity === 'error'), []);
      assert.ok(c.diagnostics.some((d) => d.code === 'PIPE6037' && d.message.includes(`no ${missing} half`)), file);
    }
    // a python-only program exports its class
    assert.equal(pipec(['export', pyOnly, '--target', 'torch', '-o', path.join(dir, 'py-out')]).status, 0);
    assert.ok(fs.existsSync(path.join(dir, 'py-out', 'custom_lm', 'modeling_tanuki.py')));
  });

  it('export refuses a Python half changed after the graph was compiled (PIPE9105)', async () => {
    const dir = tmpDir('py-changed');
    fs.cpSync(repo('pipelines/models/tanuki'), path.join(dir, 'models', 'tanuki'), { recursive: true });
    fs.copyFileSync(repo('test/custom-moe/tiny-tanuki.pipe'), path.join(dir, 'tiny.pipe'));
    const g = compile({ file: path.join(dir, 'tiny.pipe'), lower: true }).graph!;
    fs.appendFileSync(path.join(dir, 'models', 'tanuki', 'configuration_tanuki.py'), '\n# edited\n');
    const { exportTorch } = await import('../runtime/export/torch.js');
    assert.throws(() => exportTorch(g, { baseDir: dir }), /PIPE9105|python half "models\/tanuki\/modeling_tanuki\.py" changed since the graph was compiled/);
  });
});
