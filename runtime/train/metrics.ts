// The run's metrics.jsonl (one JSON object per optimizer step) and loss.html, a self-contained page
// with an SVG loss curve per stage (no scripts, no network), rewritten at the end of each stage.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appendNoFollow, refuseLink, writeFileAtomic } from '../weights/atomic.js';

export interface StepMetrics {
  stage: string;
  stage_index: number;
  step: number;
  loss: number;
  lm_loss: number;
  aux_loss?: number;
  lr: number;
  grad_norm: number;
  tokens: number;
  tokens_per_s: number;
  elapsed_s: number;
  /** Seconds the step waited for its micro-batches (0 when the data feed kept ahead). */
  data_wait_s?: number;
}

export function metricsFile(runDir: string): string {
  return path.join(runDir, 'metrics.jsonl');
}

export function appendMetrics(runDir: string, m: StepMetrics): void {
  appendNoFollow(metricsFile(runDir), JSON.stringify(m) + '\n'); // never through a planted link
}

export function readMetrics(runDir: string): StepMetrics[] {
  const f = metricsFile(runDir);
  refuseLink(f);
  if (!fs.existsSync(f)) return [];
  return fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()).flatMap((l) => {
    try {
      return [JSON.parse(l) as StepMetrics];
    } catch {
      return []; // a line torn by a kill; the resumed run rewrites it
    }
  });
}

/** On resume: drops the steps after the checkpoint, which the resumed run will redo. */
export function truncateMetrics(runDir: string, stageIndex: number, step: number): void {
  const kept = readMetrics(runDir).filter((m) => m.stage_index < stageIndex || (m.stage_index === stageIndex && m.step <= step));
  writeFileAtomic(metricsFile(runDir), kept.map((m) => JSON.stringify(m) + '\n').join(''));
}

function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

export function lossChartSvg(points: readonly { step: number; loss: number }[], title: string): string {
  const W = 640, H = 240, pad = 40;
  const xs = points.map((p) => p.step), ys = points.map((p) => p.loss).filter(Number.isFinite);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys, 0), y1 = Math.max(...ys, y0 + 1e-6);
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0)) * (W - 2 * pad);
  const sy = (y: number) => H - pad - ((y - y0) / (y1 - y0)) * (H - 2 * pad);
  const d = points.filter((p) => Number.isFinite(p.loss)).map((p, i) => `${i ? 'L' : 'M'}${sx(p.step).toFixed(1)},${sy(p.loss).toFixed(1)}`).join(' ');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">
<rect width="${W}" height="${H}" fill="white"/><text x="${pad}" y="20" font-family="sans-serif" font-size="14">${esc(title)}</text>
<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#888"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="#888"/>
<text x="${pad - 4}" y="${sy(y1) + 4}" text-anchor="end" font-size="11" font-family="sans-serif">${y1.toFixed(2)}</text>
<text x="${pad - 4}" y="${sy(y0) + 4}" text-anchor="end" font-size="11" font-family="sans-serif">${y0.toFixed(2)}</text>
<text x="${sx(x1)}" y="${H - pad + 16}" text-anchor="end" font-size="11" font-family="sans-serif">step ${x1}</text>
<path d="${d}" fill="none" stroke="#1f77b4" stroke-width="1.5"/></svg>`;
}

export function writeLossPage(runDir: string): void {
  const all = readMetrics(runDir);
  const stages = [...new Set(all.map((m) => m.stage))];
  const charts = stages.map((s) => lossChartSvg(all.filter((m) => m.stage === s), `stage ${s}: loss per step`)).join('\n');
  writeFileAtomic(path.join(runDir, 'loss.html'), `<!doctype html><meta charset="utf-8"><title>pipec loss</title><body style="font-family:sans-serif">\n<h1>Loss</h1>\n${charts}\n</body>\n`);
}
