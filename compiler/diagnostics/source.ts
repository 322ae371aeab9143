// Source text with a line index, so every phase can turn offsets into line:column once, cheaply.

export interface Position {
  line: number; // 1-based
  column: number; // 1-based, in UTF-16 code units (what editors and LSP count)
  offset: number; // 0-based
}

export interface Range {
  file: string;
  start: Position;
  end: Position; // exclusive
}

export class SourceFile {
  private readonly lineStarts: number[];

  constructor(
    readonly path: string,
    readonly text: string,
  ) {
    const starts = [0];
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
    this.lineStarts = starts;
  }

  get lineCount(): number {
    return this.lineStarts.length;
  }

  /** The line (0-based) of the last position asked for: the parser asks in near source order, so the next
   * one is most often on that line or the one after, found without a search. */
  private lastLine = 0;

  position(offset: number): Position {
    const clamped = Math.max(0, Math.min(offset, this.text.length));
    const starts = this.lineStarts;
    const l = this.lastLine;
    if (starts[l] <= clamped) {
      if (l + 1 === starts.length || clamped < starts[l + 1]) return { line: l + 1, column: clamped - starts[l] + 1, offset: clamped };
      if (l + 2 === starts.length || clamped < starts[l + 2]) {
        this.lastLine = l + 1;
        return { line: l + 2, column: clamped - starts[l + 1] + 1, offset: clamped };
      }
    }
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= clamped) lo = mid;
      else hi = mid - 1;
    }
    this.lastLine = lo;
    return { line: lo + 1, column: clamped - starts[lo] + 1, offset: clamped };
  }

  range(startOffset: number, endOffset: number): Range {
    // Error recovery can hand back a node that ends before it starts; such a node is empty, not negative.
    const start = this.clamp(startOffset);
    return new SourceRange(this, start, Math.max(start, this.clamp(endOffset)), false);
  }

  /** range(), for text that holds no line break (a token): the end is found from the start, not searched. */
  lineRange(startOffset: number, endOffset: number): Range {
    const start = this.clamp(startOffset);
    return new SourceRange(this, start, Math.max(start, this.clamp(endOffset)), true);
  }

  private clamp(offset: number): number {
    return Math.max(0, Math.min(offset, this.text.length));
  }

  lineText(line: number): string {
    const start = this.lineStarts[line - 1] ?? this.text.length;
    const next = this.lineStarts[line];
    const end = next === undefined ? this.text.length : next - 1;
    return this.text.slice(start, end).replace(/\r$/, '');
  }

  /** The range of the whole file's end, used for "unexpected end of input". */
  endRange(): Range {
    return this.range(this.text.length, this.text.length);
  }
}

/** Where a range starts and ends, as offsets (read without working out lines and columns). */
export function startOffsetOf(r: Range): number {
  return r instanceof SourceRange ? r.startOffset : r.start.offset;
}
export function endOffsetOf(r: Range): number {
  return r instanceof SourceRange ? r.endOffset : r.end.offset;
}

/** A range that covers both a and b (same file). */
export function spanRanges(a: Range, b: Range): Range {
  return { file: a.file, start: a.start.offset <= b.start.offset ? a.start : b.start, end: a.end.offset >= b.end.offset ? a.end : b.end };
}

/**
 * A range of a source file, its line and column worked out only when asked for. The parser gives every
 * AST node and identifier one, and nearly all are never shown: three objects each (range, start, end) were
 * a third of parsing's time and garbage (10,000 lines: parse + AST 68 -> 31 ms with no positions at all).
 * `start` and `end` are computed on each read; JSON (`--format json`) carries them as plain objects.
 */
export class SourceRange implements Range {
  readonly #src: SourceFile;
  /** The range holds no line break (a token), so its end is on the start's line. */
  readonly #oneLine: boolean;

  constructor(
    src: SourceFile,
    readonly startOffset: number,
    readonly endOffset: number,
    oneLine: boolean,
  ) {
    this.#src = src;
    this.#oneLine = oneLine;
  }

  get file(): string {
    return this.#src.path;
  }

  get start(): Position {
    return this.#src.position(this.startOffset);
  }

  get end(): Position {
    if (!this.#oneLine) return this.#src.position(this.endOffset);
    const start = this.start;
    return { line: start.line, column: start.column + (this.endOffset - this.startOffset), offset: this.endOffset };
  }

  toJSON(): { file: string; start: Position; end: Position } {
    return { file: this.file, start: this.start, end: this.end };
  }
}
