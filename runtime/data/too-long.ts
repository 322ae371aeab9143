// PIPE9007: a record is longer than the stage's max_length once its image tokens are counted. The
// batcher calls this after tokenising. Truncating instead would silently cut off the assistant's answer
// (the only supervised tokens), so an over-long record is an error, or a skipped record with
// skip_bad_records.
import type { ErrorLocation } from '../errors.js';
import { M } from '../errors.js';
import { recordError, type SkippedRecord } from './llava-json.js';

/**
 * Returns undefined when `tokens <= max`. Otherwise throws PIPE9007 at `location`, or, with `skip`,
 * returns the skipped-record entry for the caller to add to its list (and to the PIPE9008 warning).
 * `id` is the record's id when it has one, named in the message after the index.
 */
export function checkLength(index: number, tokens: number, max: number, location: ErrorLocation, skip: boolean, id?: string): SkippedRecord | undefined {
  if (tokens <= max) return undefined;
  const err = recordError(M.DataTooLong, [index, tokens, max], id, location, 'raise the stage\'s `max_length`, shorten the record, or set `skip_bad_records: true`');
  if (!skip) throw err;
  return { index, code: err.code, message: err.message, location };
}
