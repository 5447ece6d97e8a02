/**
 * Text that every Parquet reader takes: a lone UTF-16 surrogate (which JSON can escape, `"\ud800"`, and
 * JSON.parse accepts) becomes U+FFFD. UTF-8, and so a Parquet STRING, cannot hold one; and DuckDB refuses
 * to read a JSON column in which any value escapes one, failing the whole query. Go's encoding/json, which
 * OPA logs with, already writes U+FFFD for them, so a decision from OPA never has one; this is for other
 * clients. Everything else in the text is left as it is.
 */

const SURROGATE = /\p{Surrogate}/gu;
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** The string with each lone surrogate replaced by U+FFFD. */
export function wellFormed(s: string): string {
  return s.replace(SURROGATE, '\ufffd');
}

/** JSON text with each escape of a lone surrogate replaced by `\ufffd` (escaped pairs are left alone). */
export function wellFormedJson(text: string): string {
  if (!SURROGATE_ESCAPE.test(text)) return text;
  let out = '';
  let copied = 0;
  // backslashes occur only in strings, each starting an escape: two characters, or six for \uXXXX
  for (let i = text.indexOf('\\'); i !== -1; i = text.indexOf('\\', i)) {
    if (text[i + 1] !== 'u') {
      i += 2;
      continue;
    }
    const code = parseInt(text.slice(i + 2, i + 6), 16);
    if (code >= 0xd800 && code <= 0xdbff && text[i + 6] === '\\' && text[i + 7] === 'u') {
      const low = parseInt(text.slice(i + 8, i + 12), 16);
      if (low >= 0xdc00 && low <= 0xdfff) {
        i += 12;
        continue;
      }
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      out += `${text.slice(copied, i)}\\ufffd`;
      copied = i + 6;
    }
    i += 6;
  }
  return out + text.slice(copied);
}
