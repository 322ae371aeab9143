// Lowering: the graph validates against the shipped schema, is byte-identical across compiles, and is
// pinned by a golden file; shapes at the edges match the architectures.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { validateGraph } from '../compiler/ir/validate.js';
import { compile, graphJson } from '../compiler/service/service.js';
import { REPO_ROOT, repo } from './paths.js';

const UPDATE = process.env.UPDATE_GOLDEN === '1';

function graphOf(file: string) {
  const r = compile({ file, cwd: REPO_ROOT });
  assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
  assert.ok(r.graph);
  return r.graph;
}

describe('lowering', () => {
  // the quickstart; the 47B model's LoRA / QLoRA program (adapters, param_groups, a hand-off across models)
  for (const name of ['quickstart', 'tanuki-8x8b-vision-lora'])
    it(`pins the ${name} graph (golden) and is byte-identical across compiles`, () => {
      const a = graphJson(graphOf(`pipelines/${name}.pipe`));
      const b = graphJson(graphOf(`pipelines/${name}.pipe`));
      assert.equal(a, b);
      const golden = repo(`test/golden/graphs/${name}.graph.json`);
      if (UPDATE) fs.writeFileSync(golden, a);
      assert.ok(fs.existsSync(golden), `no test/golden/graphs/${name}.graph.json: npm run golden:update writes it; review it and commit it`);
      assert.equal(a, fs.readFileSync(golden, 'utf8'), `graph differs from test/golden/graphs/${name}.graph.json (npm run golden:update)`);
    });

  for (const p of fs.readdirSync(repo('pipelines')).filter((f) => f.endsWith('.pipe'))) {
    it(`${p} lowers to a graph that validates against schema/graph.schema.json`, () => {
      const g = graphOf(`pipelines/${p}`);
      assert.deepEqual(validateGraph(JSON.parse(graphJson(g))), []);
    });
  }

  it('keeps every SigLIP so400m patch (no CLS to drop) and drops CLIP-L/336 CLS', () => {
    const tanuki = graphOf('pipelines/tanuki-8x8b-vision.pipe').models[0];
    assert.deepEqual(tanuki.nodes.find((n) => n.id === 'vision')?.shape, ['B', 729, 1152]);
    assert.deepEqual(tanuki.nodes.find((n) => n.id === 'proj')?.shape, ['B', 729, 4096]);
    assert.equal(tanuki.image_tokens, 729);
    const llava = graphOf('pipelines/llava-1.5-7b.pipe').models[0];
    assert.deepEqual(llava.nodes.find((n) => n.id === 'vision')?.shape, ['B', 576, 1024]);
    assert.equal(llava.image_tokens, 576);
  });

  it('lowers the stage plan: hand-off, global batch, schedule', () => {
    const g = graphOf('pipelines/tanuki-8x8b-vision.pipe');
    const [align, finetune] = g.stages;
    assert.equal(align.name, 'align');
    assert.deepEqual(align.devices, { nodes: 2, per_node: 8, kind: 'gpu', memory: 80e9 });
    assert.equal(align.global_batch, 16 * 1 * 16);
    assert.equal(finetune.after, 'align');
    assert.deepEqual(finetune.handoff, [{ component: 'proj', from: 'align' }]);
    assert.equal(finetune.global_batch, 2 * 4 * 16);
    assert.equal(finetune.max_length, 2048); // inherited from align
    assert.deepEqual(finetune.optimizer, { name: 'adamw', attrs: { lr: 2e-5, weight_decay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8 } });
  });

  it('rejects a graph that breaks the schema or refers to unknown nodes', () => {
    const g = JSON.parse(graphJson(graphOf('pipelines/quickstart.pipe')));
    g.models[0].nodes[1].inputs = ['nowhere'];
    assert.match(validateGraph(g).join('\n'), /reads nowhere/);
    delete g.stages[0].batch;
    assert.match(validateGraph(g).join('\n'), /batch/);
  });
});
