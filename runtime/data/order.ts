// The order a stage sees its samples in, epoch by epoch, from the stage seed alone, so a resumed run
// replays exactly the batches an uninterrupted run would have seen. A sample is a record of one of the
// stage's sources, named by one number: the source's offset plus its position in that source's list of
// usable records. Micro-batch k of the stage is samples [within * batch, (within + 1) * batch) of epoch
// floor(k / microPerEpoch), where within = k % microPerEpoch; a partial last batch is dropped.
//   - one dataset: a seeded shuffle of its samples per epoch (`epochOrder`, the order pipec has always used);
//   - a mixture: each source gives its share of every epoch -- `counts` as given, `ratios` of an epoch as
//     long as the sources together (largest remainders, so the shares add up) -- drawn from an endless
//     series of seeded shuffles of the source, so a source is seen whole before any record repeats (a
//     larger share than the source repeats it, a smaller one samples it afresh each epoch); then the
//     epoch is shuffled as one;
//   - group_by_length: LLaVA's get_modality_length_grouped_indices. Records with images and text-only
//     records are grouped apart: each group, in the epoch's shuffled order, is cut into megabatches of
//     `batch` x min(50, n / (4 batch)) samples (transformers' LengthGroupedSampler), each sorted longest
//     first and cut into batches; the batches of both groups are shuffled together, and each group's last
//     batch goes, mixed and in sample order, to the end. With one modality only, the grouped order as is.
import { Rng } from '../random.js';

/** One source of a stage: how many usable samples it has and each one's signed length (negative: text-only). */
export interface SourceSamples {
  name: string;
  count: number;
  /** Per sample (position in the source), tokens with image tokens; negative for a text-only record. */
  lengths?: Int32Array;
}

export interface OrderPlan {
  seed: number;
  batch: number;
  groupByLength?: boolean;
  /** A mixture's shares, one per source: records per epoch (`count`) or a fraction of the epoch (`ratio`). */
  shares?: { ratio?: number; count?: number }[];
  /** The mixture's name (it seeds each source's series of shuffles). */
  mixture?: string;
}

/** A seeded Fisher-Yates shuffle of 0..n-1: the same draws as Rng.shuffle on an array. */
export function shuffledRange(n: number, rng: Rng): Uint32Array {
  const xs = new Uint32Array(n);
  for (let i = 0; i < n; i++) xs[i] = i;
  return shuffleInPlace(xs, rng);
}

function shuffleInPlace(xs: Uint32Array, rng: Rng): Uint32Array {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = xs[i]!;
    xs[i] = xs[j]!;
    xs[j] = t;
  }
  return xs;
}

/** How many samples each source gives per epoch. Ratios apply to the sources' total, by largest remainders. */
export function sharesPerEpoch(counts: readonly number[], shares: readonly { ratio?: number; count?: number }[]): number[] {
  if (shares.every((s) => s.count !== undefined)) return shares.map((s) => s.count!);
  const total = counts.reduce((a, b) => a + b, 0);
  const exact = shares.map((s) => (s.ratio ?? 0) * total);
  const out = exact.map(Math.floor);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let k = 0, left = total - out.reduce((a, b) => a + b, 0); k < order.length && left > 0; k++, left--) out[order[k]![1]]!++;
  return out;
}

export class EpochOrders {
  /** Where each source's samples start in the one numbering. */
  readonly offsets: number[];
  readonly perEpoch: number[];
  readonly samplesPerEpoch: number;
  private cached: { epoch: number; order: Uint32Array } | undefined;
  private passes = new Map<number, { pass: number; order: Uint32Array }>();

  constructor(readonly sources: readonly SourceSamples[], readonly plan: OrderPlan) {
    this.offsets = [];
    let at = 0;
    for (const s of sources) (this.offsets.push(at), (at += s.count));
    this.perEpoch = plan.shares ? sharesPerEpoch(sources.map((s) => s.count), plan.shares) : sources.map((s) => s.count);
    this.samplesPerEpoch = this.perEpoch.reduce((a, b) => a + b, 0);
  }

  get microPerEpoch(): number {
    return Math.floor(this.samplesPerEpoch / this.plan.batch);
  }

  /** The source and its sample position of one numbered sample. */
  locate(sample: number): { source: number; position: number } {
    let s = this.offsets.length - 1;
    while (s > 0 && this.offsets[s]! > sample) s--;
    return { source: s, position: sample - this.offsets[s]! };
  }

  /** The samples of micro-batch k (0-based over the stage), numbered. */
  microBatch(k: number): Uint32Array {
    const per = this.microPerEpoch;
    const order = this.epoch(Math.floor(k / per));
    const within = k % per;
    return order.subarray(within * this.plan.batch, (within + 1) * this.plan.batch);
  }

  /** Epoch e's samples in order (the last one computed is kept). */
  epoch(e: number): Uint32Array {
    if (this.cached?.epoch === e) return this.cached.order;
    let order: Uint32Array;
    if (!this.plan.shares) order = shuffledRange(this.samplesPerEpoch, Rng.derive(this.plan.seed, `epoch${e}`));
    else {
      order = new Uint32Array(this.samplesPerEpoch);
      let at = 0;
      this.sources.forEach((_s, i) => {
        const k = this.perEpoch[i]!;
        for (let j = 0; j < k; j++) order[at++] = this.offsets[i]! + this.seriesAt(i, e * k + j);
      });
      shuffleInPlace(order, Rng.derive(this.plan.seed, `epoch${e}`));
    }
    if (this.plan.groupByLength) order = this.grouped(order, e);
    this.cached = { epoch: e, order };
    return order;
  }

  /** Position n of source i's endless series of shuffles (pass p = floor(n / count)). */
  private seriesAt(i: number, n: number): number {
    const count = this.sources[i]!.count;
    const pass = Math.floor(n / count);
    let p = this.passes.get(i);
    if (p?.pass !== pass) this.passes.set(i, (p = { pass, order: shuffledRange(count, Rng.derive(this.plan.seed, `mixture:${this.plan.mixture ?? ''}:${this.sources[i]!.name}:pass${pass}`)) }));
    return p.order[n - pass * count]!;
  }

  /** The signed length of a numbered sample (0 when lengths are unknown). */
  lengthOf(sample: number): number {
    const { source, position } = this.locate(sample);
    return this.sources[source]!.lengths?.[position] ?? 0;
  }

  private grouped(order: Uint32Array, e: number): Uint32Array {
    const b = this.plan.batch;
    const len = new Map<number, number>();
    for (const x of order) len.set(x, this.lengthOf(x));
    const mm = [...order].filter((x) => len.get(x)! > 0);
    const lang = [...order].filter((x) => !(len.get(x)! > 0));
    if (!mm.length || !lang.length) return Uint32Array.from(lengthGrouped([...order], b, len));
    const batches = (xs: number[]) => {
      const out: number[][] = [];
      for (let i = 0; i < xs.length; i += b) out.push(xs.slice(i, i + b));
      return out;
    };
    const mmBatches = batches(lengthGrouped(mm, b, len));
    const langBatches = batches(lengthGrouped(lang, b, len));
    const last = [...mmBatches.pop()!, ...langBatches.pop()!].sort((x, y) => x - y);
    const all = [...mmBatches, ...langBatches];
    const pick = shuffledRange(all.length, Rng.derive(this.plan.seed, `group${e}`));
    const out: number[] = [];
    for (const i of pick) out.push(...all[i]!);
    out.push(...last);
    return Uint32Array.from(out);
  }
}

/** Megabatches of the order, each sorted longest first (by |length|; ties keep their order). */
function lengthGrouped(xs: number[], batch: number, len: ReadonlyMap<number, number>): number[] {
  const mult = Math.min(Math.floor(xs.length / (batch * 4)), 50) || 1;
  const size = batch * mult;
  const out: number[] = [];
  for (let i = 0; i < xs.length; i += size) out.push(...xs.slice(i, i + size).sort((x, y) => Math.abs(len.get(y)!) - Math.abs(len.get(x)!)));
  return out;
}
