// Progress: a redrawn bar on a terminal (stage, step/total, loss, lr, tokens/s, ETA), plain log lines
// otherwise (CI logs, pipes), every `every` steps and at the end of a stage.
export interface StepReport {
  stage: string;
  step: number;
  total: number;
  loss: number;
  lr: number;
  tokensPerSec: number;
  etaSec: number;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60), r = Math.round(s % 60);
  return m ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export class Progress {
  private lastLen = 0;

  constructor(
    private readonly out: NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean },
    private readonly every = 10,
  ) {}

  private get tty(): boolean {
    return !!(this.out as { isTTY?: boolean }).isTTY;
  }

  step(r: StepReport): void {
    const text = `${r.stage} ${String(r.step).padStart(String(r.total).length)}/${r.total} loss ${r.loss.toFixed(4)} lr ${r.lr.toExponential(2)} ${Math.round(r.tokensPerSec)} tok/s ETA ${fmtTime(r.etaSec)}`;
    if (this.tty) {
      const width = 24, filled = Math.round((r.step / r.total) * width);
      const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`;
      this.out.write(`\r${line}${' '.repeat(Math.max(0, this.lastLen - line.length))}`);
      this.lastLen = line.length;
      if (r.step === r.total) (this.out.write('\n'), (this.lastLen = 0));
    } else if (r.step % this.every === 0 || r.step === r.total || r.step === 1) this.out.write(`step ${text}\n`);
  }

  line(text: string): void {
    if (this.tty && this.lastLen) (this.out.write('\n'), (this.lastLen = 0));
    this.out.write(text + '\n');
  }
}
