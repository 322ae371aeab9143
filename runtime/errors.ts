// Errors the runtime reports to users. Each carries a catalogue code (PIPE9xxx, or a compile-time code
// when the runtime re-checks something), a location when there is one (a data file and record, a .pipe
// file), and a hint. The CLI prints them as `file:line:col - error PIPExxxx: message` and exits 1; it
// never prints a stack trace for one.
import { M, type MessageDef } from '../compiler/diagnostics/catalogue.js';

export interface ErrorLocation {
  file: string;
  line?: number; // 1-based
  col?: number; // 1-based
}

export class PipeRuntimeError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly location?: ErrorLocation,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'PipeRuntimeError';
  }

  /** `file:line:col - error PIPE9004: message` plus an indented hint line. */
  render(): string {
    const loc = this.location ? `${this.location.file}${this.location.line ? `:${this.location.line}:${this.location.col ?? 1}` : ''} - ` : '';
    return `${loc}error ${this.code}: ${this.message}${this.hint ? `\n   hint: ${this.hint}` : ''}`;
  }
}

/** Builds an error from a catalogue entry: `fail(M.DataImageMissing, [3, 'a.png'], {file}, 'hint')`. */
export function runtimeError<A extends unknown[]>(def: MessageDef<A>, args: A, location?: ErrorLocation, hint?: string): PipeRuntimeError {
  return new PipeRuntimeError(def.code, def.format(...args), location, hint);
}

export { M };
