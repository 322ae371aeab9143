// PIPE9007: a record is longer than the stage's max_length once its image tokens are counted. The
// data pass checks this after tokenising (example-checks.ts). Truncating instead would silently cut off
// the assistant's answer (the only supervised tokens), so an over-long record is an error, or a skipped
// record with skip_bad_records.
import type { ErrorLocation, PipeRuntimeError } from '../errors.js';
import { M } from '../errors.js';
import { recordError, type SkippedRecord } from './llava-json.js';

/** The PIPE9007 error for a record of `tokens` tokens; `id` is the record's id when it has one. */
export function tooLongError(index: number, tokens: number, max: number, location: ErrorLocation, id?: string): PipeRuntimeError {
  return recordError(M.DataTooLong, [index, tokens, max], id, location, 'raise the stage\'s `max_length`, shorten the record, or set `skip_bad_records: true`');
}

/**
 * Returns undefined when `tokens <= max`. Otherwise throws PIPE9007 at `location`, or, with `skip`,
 * returns the skipped-record entry for the caller to add to its list (and to the PIPE9008 warning).
 */
export function checkLength(index: number, tokens: number, max: number, location: ErrorLocation, skip: boolean, id?: string): SkippedRecord | undefined {
  if (tokens <= max) return undefined;
  const err = tooLongError(index, tokens, max, location, id);
  if (!skip) throw err;
  return { index, code: err.code, message: err.message, location };
}
