// A hand-written lexer for what well-formed .pipe files are made of, about four times faster than
// Chevrotain's on the compiler benchmark (a loop over char codes, no pattern tried and given up per token).
// It makes exactly the tokens PipeLexer makes, the same objects (image, offsets, type), comments and
// whitespace skipped; at anything it does not handle (a character outside the language, `!` without `=`,
// an unterminated string or comment) it says so by returning undefined, and the caller lexes the whole
// file with PipeLexer, which reports the error. test/lexer.test.ts checks the two agree.
import type { IToken, TokenType } from 'chevrotain';
import * as T from './tokens.js';

const KEYWORDS = new Map<string, TokenType>(Object.entries(T.Kw));

/** The types of the one-character tokens (and first characters of two-character ones), by char code. */
const SINGLE: Array<TokenType | undefined> = [];
for (const [ch, type] of [
  ['<', T.Lt], ['>', T.Gt], ['=', T.Equals], ['+', T.Plus], ['-', T.Minus], ['*', T.Star], ['/', T.Slash], ['%', T.Percent], ['|', T.Pipe],
  [':', T.Colon], [',', T.Comma], ['.', T.Dot], ['(', T.LParen], [')', T.RParen], ['[', T.LBracket], [']', T.RBracket], ['{', T.LBrace], ['}', T.RBrace],
] as Array<[string, TokenType]>) SINGLE[ch.charCodeAt(0)] = type;

// The number and string patterns are PipeLexer's own, anchored where they are tried.
const sticky = (t: TokenType) => new RegExp((t.PATTERN as RegExp).source, 'y');
const QUANTITY = sticky(T.Quantity);
const NUMBER = sticky(T.NumberLit);
const STRING = sticky(T.StringLit);

const isLetter = (c: number) => (c >= 97 && c <= 122) || (c >= 65 && c <= 90);
const isIdentStart = (c: number) => isLetter(c) || c === 95;
const isIdentPart = (c: number) => isIdentStart(c) || (c >= 48 && c <= 57);
const isDigit = (c: number) => c >= 48 && c <= 57;

function token(image: string, startOffset: number, tokenType: TokenType): IToken {
  // The shape PipeLexer's token factory (tokens.ts) makes, so the parser sees one kind of object.
  return { image, startOffset, endOffset: startOffset + image.length - 1, tokenTypeIdx: tokenType.tokenTypeIdx!, tokenType };
}

/** The tokens of `text` as PipeLexer.tokenize(text).tokens, or undefined where PipeLexer should lex it. */
export function fastLex(text: string): IToken[] | undefined {
  const tokens: IToken[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    // Whitespace: [ \t\r\n\uFEFF]
    if (c === 32 || c === 10 || c === 9 || c === 13 || c === 0xfeff) {
      i++;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentPart(text.charCodeAt(j))) j++;
      const image = text.slice(i, j);
      tokens.push(token(image, i, KEYWORDS.get(image) ?? T.Identifier));
      i = j;
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(text.charCodeAt(i + 1)))) {
      // NumberLit's match, scanned: digits [. digits] or . digits, then [eE][+-]?digits. Unless a letter
      // follows it (a unit: Quantity, whose pattern decides), that is the token: no shorter number part
      // could be followed by a letter that did not start the exponent, which Quantity's lookahead refuses.
      let j = i;
      while (isDigit(text.charCodeAt(j))) j++;
      if (text.charCodeAt(j) === 46) for (j++; isDigit(text.charCodeAt(j)); ) j++;
      const e = text.charCodeAt(j);
      if (e === 101 || e === 69) {
        const s = text.charCodeAt(j + 1);
        const k = s === 43 || s === 45 ? j + 2 : j + 1;
        if (isDigit(text.charCodeAt(k))) for (j = k + 1; isDigit(text.charCodeAt(j)); ) j++;
      }
      if (!isLetter(text.charCodeAt(j))) {
        tokens.push(token(text.slice(i, j), i, T.NumberLit));
        i = j;
        continue;
      }
      QUANTITY.lastIndex = i;
      let m = QUANTITY.exec(text);
      let type = T.Quantity;
      if (!m) {
        NUMBER.lastIndex = i;
        m = NUMBER.exec(text);
        type = T.NumberLit;
      }
      if (!m) return undefined;
      tokens.push(token(m[0], i, type));
      i += m[0].length;
      continue;
    }
    if (c === 34) {
      // A string without escapes or line breaks, scanned; any other by StringLit's pattern.
      let j = i + 1;
      let d = text.charCodeAt(j);
      while (j < n && d !== 34 && d !== 92 && d !== 10) d = text.charCodeAt(++j);
      if (d === 34) {
        tokens.push(token(text.slice(i, j + 1), i, T.StringLit));
        i = j + 1;
        continue;
      }
      STRING.lastIndex = i;
      const m = STRING.exec(text);
      if (!m) return undefined; // unterminated: PipeLexer makes the token parse() reports
      tokens.push(token(m[0], i, T.StringLit));
      i += m[0].length;
      continue;
    }
    const next = text.charCodeAt(i + 1);
    if (c === 47) {
      if (next === 47) {
        // A line comment, to the end of the line.
        const j = text.indexOf('\n', i + 2);
        i = j < 0 ? n : j;
        continue;
      }
      if (next === 42) {
        const j = text.indexOf('*/', i + 2);
        if (j < 0) return undefined; // unterminated
        i = j + 2;
        continue;
      }
    }
    let two: TokenType | undefined;
    if (c === 45 && next === 62) two = T.Arrow;
    else if (c === 42 && next === 42) two = T.StarStar;
    else if (next === 61) two = c === 61 ? T.EqEq : c === 33 ? T.NotEq : c === 60 ? T.LtEq : c === 62 ? T.GtEq : undefined;
    if (two) {
      tokens.push(token(text.slice(i, i + 2), i, two));
      i += 2;
      continue;
    }
    const one = SINGLE[c];
    if (!one) return undefined; // not a character of the language: PipeLexer reports it
    tokens.push(token(text[i], i, one));
    i++;
  }
  return tokens;
}
