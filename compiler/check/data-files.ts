// Pass 8: the files datasets name, checked before anything trains. `file:` must be a file, `images:` a
// folder, `tokenizer:` a file (and tokenizer_config.json beside it when the template reads it there),
// each an error at the argument when missing (PIPE2013-2015). The run's tokenizer -- the first dataset
// that names one, as the runtime picks it -- must produce only ids the llm's embedding table has rows
// for (PIPE4012), the image marker included (PIPE4013), and no other dataset may name a different one
// (PIPE4016): the runtime has one tokenizer per run. Records themselves are read by the data pre-flight
// (`pipec check --data`, and `pipec run` before its first step), which needs the runtime.
//
// Relative paths resolve against the entry .pipe file's folder, as `pipec run` resolves them; paths
// from a run config (`paths.data.NAME.PARAM`) are already absolute.
import * as path from 'node:path';
import { M } from '../diagnostics/catalogue.js';
import type { Range } from '../diagnostics/source.js';
import type { ComponentInfo, DatasetInfo, Host, Program, Reporter } from './program.js';
import { readTokenizerSummary, TokenizerJsonError, type TokenizerSummary } from './tokenizer-json.js';

export function checkDataFiles(program: Program, host: Host, reporter: Reporter): void {
  const base = path.dirname(program.entry.path);
  let runTokenizer: { file: string; shown: string; dataset: DatasetInfo; range: Range; summary?: TokenizerSummary } | undefined;
  for (const d of program.datasets.values()) {
    if (!d.ok) continue;
    const str = (param: string) => {
      const v = d.params.get(param);
      return v?.t === 'str' ? v.v : undefined;
    };
    const at = (param: string) => argRange(program, d, param);
    const abs = (p: string) => path.resolve(base, p);

    const file = str('file');
    if (file !== undefined) {
      const why = !host.exists(abs(file)) ? 'does not exist' : host.isDirectory(abs(file)) ? 'is a folder; `file:` names a .json or .jsonl file' : undefined;
      if (why) reporter.report(M.DataFileNotFound, at('file'), d.name, file, why).hint = `looked for ${host.display(abs(file))}; \`file:\` is relative to the .pipe file (a run config's \`paths.data.${d.name}.file\` can point elsewhere)`;
    }
    const images = str('images');
    if (images !== undefined) {
      const why = !host.exists(abs(images)) ? 'does not exist' : !host.isDirectory(abs(images)) ? 'is a file, not a folder' : undefined;
      if (why) reporter.report(M.ImagesFolderNotFound, at('images'), d.name, images, why).hint = `looked for ${host.display(abs(images))}; records name their images inside this folder`;
    }
    const tok = str('tokenizer');
    const template = str('template');
    const source = template !== undefined ? templateSource(program, template) : undefined;
    if (tok) {
      const t = abs(tok);
      const why = !host.exists(t) ? 'does not exist' : host.isDirectory(t) ? 'is a folder; name its tokenizer.json' : undefined;
      if (why) {
        reporter.report(M.TokenizerNotFound, at('tokenizer'), d.name, tok, why).hint = `looked for ${host.display(t)}`;
        continue;
      }
      if (source !== undefined && !host.exists(path.join(path.dirname(t), source)))
        reporter.report(M.TokenizerNotFound, at('template'), d.name, path.join(path.dirname(tok), source), 'does not exist').hint = `template \`${template}\` reads ${source} beside the tokenizer`;
      if (!runTokenizer) runTokenizer = { file: t, shown: tok, dataset: d, range: at('tokenizer') };
      else if (path.resolve(runTokenizer.file) !== t) {
        const diag = reporter.report(M.TwoTokenizers, at('tokenizer'), d.name, tok, runTokenizer.dataset.name, runTokenizer.shown);
        diag.related = [{ message: `the run's tokenizer, named by \`${runTokenizer.dataset.name}\``, range: runTokenizer.range }];
        diag.hint = 'a run has one tokenizer (the first dataset that names one); name the same file in every dataset';
      }
    } else if (source !== undefined) {
      reporter.report(M.TokenizerNotFound, at('template'), d.name, source, 'cannot be found: the dataset names no tokenizer').hint = `template \`${template}\` reads ${source} beside the tokenizer; add \`tokenizer: "path/to/tokenizer.json"\``;
    }
  }
  if (runTokenizer) checkVocab(program, reporter, runTokenizer);
}

/** The tokenizer's ids against every llm a stage trains, and the image marker's id. */
function checkVocab(program: Program, reporter: Reporter, tok: { file: string; shown: string; dataset: DatasetInfo; range: Range }): void {
  let s: TokenizerSummary;
  try {
    s = readTokenizerSummary(tok.file);
  } catch (e) {
    if (!(e instanceof TokenizerJsonError) && !(e as NodeJS.ErrnoException).code) throw e;
    reporter.report(M.TokenizerUnreadableAtCheck, tok.range, tok.shown, (e as Error).message).hint = 'point `tokenizer:` at a Hugging Face tokenizer.json';
    return;
  }
  const markerValue = tok.dataset.params.get('image_marker');
  const marker = markerValue?.t === 'str' ? markerValue.v : '<image>';
  const markerId = s.idOf(marker);
  const seen = new Set<ComponentInfo>();
  for (const stage of program.stages) {
    const llm = stage.model?.llm;
    if (!llm?.ok || seen.has(llm)) continue;
    seen.add(llm);
    const v = llm.params.get('vocab');
    if (v?.t !== 'num') continue;
    const vocab = v.v;
    const related = [{ message: `\`${llm.name}.vocab\` is ${vocab}`, range: vocabRange(llm) }];
    const markerOut = markerId !== undefined && markerId >= vocab && stage.model!.imageTokens !== undefined;
    if (markerOut) {
      const d = reporter.report(M.MarkerOutsideVocab, tok.range, marker, markerId, tok.shown, llm.name, vocab);
      d.related = related;
      d.hint = `the embedding table has no row for it: set \`${llm.name}\`'s \`vocab: ${markerId + 1}\` or more (LLaVA resizes the embeddings after adding the token)`;
    }
    const size = markerOut ? s.sizeWithout(markerId) : s.size;
    if (size > vocab) {
      const detail = `${s.modelTokens} in its vocabulary, ids up to ${s.modelMax}; ${s.addedTokens} added, ids up to ${s.addedMax}${markerOut ? '; the image marker not counted' : ''}`;
      const d = reporter.report(M.TokenizerExceedsVocab, tok.range, tok.shown, size, detail, llm.name, vocab);
      d.related = related;
      d.hint = `ids ${vocab} and above have no embedding row: set \`${llm.name}\`'s \`vocab: ${s.size}\` or more, or use the tokenizer the llm was trained with`;
    }
  }
}

/** The source file a template reads beside the tokenizer (`hf_chat_template`'s tokenizer_config.json), if it has one. */
function templateSource(program: Program, name: string): string | undefined {
  const f = program.templates.get(name)?.fields.find((x) => x.name.name === 'source');
  return f?.value.kind === 'String' ? f.value.value : undefined;
}

/** Where an argument was given (the call, or a run config); a default from the standard library points at the dataset's call instead. */
function argRange(program: Program, d: DatasetInfo, param: string): Range {
  const r = d.paramRanges?.get(param);
  const inStdlib = r && program.files.some((f) => f.isStdlib && f.source.path === r.file);
  return r && !inStdlib ? r : d.decl.init.range;
}

function vocabRange(c: ComponentInfo): Range {
  const r = c.paramRanges.get('vocab');
  return r && r.file === c.decl.range.file ? r : c.decl.init.range;
}
