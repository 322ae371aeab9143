// Every Hugging Face layout pipec reads, made by transformers itself (test/reference/hf_layouts.py): for
// CLIP + Llama and SigLIP + Mixtral, per-component folders as transformers 4.x and 5.x write them, the
// hub's two-tower checkpoints, LLaVA folders in the 4.x and 5.x layouts and as 5.x's save_pretrained
// writes them, the original LLaVA repos' layout, standalone projector files, fused Mixtral experts;
// single files and shards; F32, F16 and BF16. Each program leaves the dimensions to config.json. Each
// must check clean, name the layout it detected, load, and give transformers' loss and last-position
// logits (LlavaForConditionalGeneration on the same records) to 1e-4 through `pipec eval`.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { main } from '../../cli/main.js';
import { compile } from '../../compiler/service/service.js';
import { pipec } from '../helpers/cli.js';
import { unavailable } from '../helpers/required.js';
import { runPython, transformersPython } from '../helpers/python.js';
import { PYTHON_ENV } from '../helpers/reference.js';
import { tmpDir } from '../helpers/tmp.js';
import { repo } from '../paths.js';

const SCRIPT = repo('test/reference/hf_layouts.py');
const TOL = 1e-4;

function run(py: string, args: string[]): string {
  return runPython(py, [SCRIPT, ...args], { env: PYTHON_ENV });
}

interface Detail { index: number; input_ids: number[]; labels: number[]; image_start: number; last_logits: number[] }
interface Result { loss: number; tokens: number; records: number; details: Detail[]; aux_loss?: number }

async function pipecEval(file: string, out: string): Promise<Result> {
  let err = '';
  const code = await main(['eval', file, '--backend', 'cpu', '--records', '-o', out], { out: () => undefined, err: (s) => void (err += s) });
  assert.equal(code, 0, `pipec eval ${file} exited ${code}:\n${err}`);
  return JSON.parse(fs.readFileSync(out, 'utf8')) as Result;
}

describe('Hugging Face layouts: transformers-written checkpoints check, load and evaluate as transformers does', function () {
  this.timeout(900_000);
  let work = '';
  let py = '';
  const figures: string[] = [];

  before(function () {
    const found = transformersPython();
    if ('why' in found) unavailable(this, 'a Python to write the checkpoints with transformers', found.why);
    py = found.python;
    work = tmpDir('hf-layouts');
    run(py, ['build', work]);
  });

  after(() => {
    if (figures.length) console.log(`      max |difference| to transformers per layout:\n${figures.map((f) => `        ${f}`).join('\n')}`);
  });

  for (const family of ['clip-llama', 'siglip-mixtral']) {
    it(`${family}: every layout checks clean with the dimensions of config.json, and gives transformers' loss and logits`, async () => {
      const dir = path.join(work, family);
      const layouts = JSON.parse(fs.readFileSync(path.join(dir, 'layouts.json'), 'utf8')) as { name: string; what: string }[];
      assert.ok(layouts.length >= (family === 'clip-llama' ? 7 : 8), `${layouts.length} layouts written`);
      const results = new Map<string, Result>();
      for (const l of layouts) {
        const file = path.join(dir, l.name, 'main.pipe');
        const r = compile({ file, lower: true });
        const problems = r.diagnostics.filter((d) => d.severity !== 'info');
        assert.deepEqual(problems.map((d) => `${d.code} ${d.message}`), [], `${l.name}: ${l.what}`);
        // every component names the layout it was read in
        const detected = r.diagnostics.filter((d) => d.code === 'PIPE6013').map((d) => d.message);
        assert.equal(detected.length, 3, `${l.name}: ${detected.join('; ')}`);
        // dimensions the program leaves out come from config.json (the stdlib defaults are 4096 / 1152 / 1024)
        const comps = new Map(r.graph!.models[0]!.components.map((c) => [c.name, c.attrs]));
        assert.equal(comps.get('lm')!['hidden'], 32, `${l.name}: lm.hidden`);
        assert.equal(comps.get('lm')!['vocab'], 32, `${l.name}: lm.vocab`);
        assert.equal(comps.get('vision')!['hidden'], 16, `${l.name}: vision.hidden`);
        assert.equal(comps.get('vision')!['select_layer'], -2, `${l.name}: vision.select_layer`);
        assert.equal(comps.get('proj')!['in'], 16, `${l.name}: proj.in`);
        if (family === 'siglip-mixtral') assert.equal(comps.get('lm')!['experts'], 4, `${l.name}: lm.experts`);
        results.set(l.name, await pipecEval(file, path.join(dir, l.name, 'result.json')));
      }
      // every layout evaluated the same records; transformers evaluates them once
      const first = results.get(layouts[0]!.name)!;
      for (const [name, r] of results)
        assert.deepEqual(r.details.map((d) => [d.input_ids, d.labels, d.image_start]), first.details.map((d) => [d.input_ids, d.labels, d.image_start]), `${name}: other records`);
      const ref = JSON.parse(run(py, ['reference', dir, path.join(dir, layouts[0]!.name, 'result.json')])) as { loss: number; last_logits: number[][] };
      assert.equal(first.records, 5);
      for (const [name, r] of results) {
        const lossDiff = Math.abs(r.loss - ref.loss);
        let logitDiff = 0;
        r.details.forEach((d, b) => d.last_logits.forEach((x, i) => (logitDiff = Math.max(logitDiff, Math.abs(x - ref.last_logits[b]![i]!)))));
        figures.push(`${family}/${name}: loss ${lossDiff.toExponential(1)}, logits ${logitDiff.toExponential(1)} (loss ${r.loss.toFixed(5)})`);
        assert.ok(lossDiff <= TOL, `${name}: loss ${r.loss} vs transformers ${ref.loss}`);
        assert.ok(logitDiff <= TOL, `${name}: last-position logits differ by ${logitDiff} from transformers'`);
      }
    });
  }

  it('pipec check -v and pipec graph name the layout of each component', () => {
    const file = path.join(work, 'siglip-mixtral', 'llava-5x', 'main.pipe');
    const c = pipec(['check', '-v', file]);
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stderr, /info PIPE6013: `lm` reads checkpoint "\.\.\/llava-5x" as LlavaForConditionalGeneration, transformers 5\.x layout: model\.language_model\.\* \+ lm_head\.weight, experts fused/);
    const g = pipec(['graph', path.join(work, 'clip-llama', 'llava-4x', 'main.pipe')]);
    assert.equal(g.status, 0, g.stderr);
    assert.match(g.stdout, /weights "\.\.\/llava-4x": LlavaForConditionalGeneration, transformers 4\.x layout[^\n]*: vision_tower\.vision_model\.\*/);
  });
});
