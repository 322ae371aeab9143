// Acceptance for streaming data and resume (issue 17, point 2), with real processes: a run whose stage
// streams a mixture of two LLaVA datasets (records by index, images decoded in a worker thread ahead
// of the step, length grouping) is SIGKILLed right after the checkpoint of step 7 -- in the middle of
// its second epoch, with micro-batches already prepared ahead -- and `--resume` must continue with
// the exact next batch: every step's loss, learning rate and gradient norm bit-identical to an
// uninterrupted run's.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeTokenizer } from '../data-fixtures.js';
import { pipec } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { records, streamProgram, WORDS, writeImages, writeJson } from '../stream-fixtures.js';

/** Every step's figures that do not depend on the clock. */
function stepRows(dir: string): unknown[] {
  return fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const { stage, step, loss, lm_loss, lr, grad_norm, tokens } = JSON.parse(l) as Record<string, unknown>;
    return [stage, step, loss, lm_loss, lr, grad_norm, tokens];
  });
}

describe('streaming data: kill -9 mid-epoch and --resume (child processes)', function () {
  this.timeout(300_000);

  it('continues with the exact next batch: losses bit-identical to an uninterrupted run', () => {
    const dir = tmpDir('stream-resume');
    const images = writeImages(dir);
    writeTokenizer(path.join(dir, 'tokenizer.json'), WORDS);
    writeJson(path.join(dir, 'a.json'), records(8, images, { textEvery: 3, badAt: 4 }), false);
    fs.writeFileSync(path.join(dir, 'b.jsonl'), records(5, images, { prefix: 'b' }).map((r) => JSON.stringify(r)).join('\n'));
    const pipe = path.join(dir, 'p.pipe');
    fs.writeFileSync(pipe, streamProgram({
      datasets: [
        'dataset a = llava_json(file: "a.json", images: "images", template: short, tokenizer: "tokenizer.json", skip_bad_records: true, require_image: false, image_aspect: "pad")',
        'dataset b = llava_json(file: "b.jsonl", images: "images", template: short, tokenizer: "tokenizer.json")',
        'dataset mix = mixture(ratios: { a: 0.6, b: 0.4 })',
      ],
      stages: [['s', 'mix']],
      steps: 14,
      checkpointEvery: 1,
      stageExtra: 'group_by_length: true',
    }));
    const env = { PIPEC_WASM_THREADS: '1' };
    const whole = path.join(dir, 'whole');
    const a = pipec(['run', pipe, '--out', whole, '--backend', 'wasm'], { env });
    assert.equal(a.status, 0, a.stderr);
    // 7 + 5 records per epoch (ratios of 12), batch 2: 6 micro-batches an epoch; step 7 is the 2nd of epoch 2
    assert.match(a.stderr, /stage s: train \[proj, lm\], frozen \[vision\]; 12 records, 14 steps/);

    const killed = path.join(dir, 'killed');
    const k = pipec(['run', pipe, '--out', killed, '--backend', 'wasm'], { env: { ...env, PIPEC_FAULT_KILL_AT_CHECKPOINT: '7:latest' } });
    assert.equal(k.signal, 'SIGKILL', k.stderr);
    const state = JSON.parse(fs.readFileSync(path.join(killed, 'checkpoints', '00-s-step000007', 'trainer_state.json'), 'utf8')) as { data: unknown };
    assert.deepEqual(state.data, { samples_per_epoch: 12, micro_batch: 7 });
    const r = pipec(['run', pipe, '--out', killed, '--backend', 'wasm', '--resume'], { env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /resuming from .*00-s-step000007 \(stage s, step 7\/14\)/);
    assert.match(r.stderr, /data pre-flight: stage s: .* \(cached\)/);
    assert.deepEqual(stepRows(killed), stepRows(whole));
    assert.equal(stepRows(whole).length, 14);
  });
});
