// Learning-rate schedules as transformers defines them (get_cosine_schedule_with_warmup and friends):
// the multiplier for optimizer step s (0-based) is s / warmup during warmup, then decays over the
// remaining steps. Step 0 therefore trains with lr 0 when there is warmup, exactly as in transformers.
import type { AttrValue } from '../../compiler/ir/graph.js';

export interface Schedule {
  name: string;
  attrs: Record<string, AttrValue>;
}

export function warmupSteps(s: Schedule, total: number): number {
  const steps = Number(s.attrs['warmup_steps'] ?? 0);
  if (steps > 0) return steps;
  return Math.ceil(Number(s.attrs['warmup_ratio'] ?? 0) * total);
}

/** The learning-rate multiplier in [0, 1] at optimizer step `step` of `total`. */
export function lrMultiplier(s: Schedule, step: number, total: number): number {
  const warm = warmupSteps(s, total);
  if (step < warm) return step / Math.max(1, warm);
  const minRatio = Number(s.attrs['min_lr_ratio'] ?? 0);
  const progress = (step - warm) / Math.max(1, total - warm);
  switch (s.name) {
    case 'cosine':
      return minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)));
    case 'linear':
      return Math.max(minRatio, 1 - progress * (1 - minRatio));
    case 'constant':
      return 1;
    default:
      throw new Error(`unknown schedule "${s.name}"`);
  }
}
