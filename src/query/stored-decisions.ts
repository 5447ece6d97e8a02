import { gunzipSync } from 'node:zlib';
import { arrayElementTexts } from '../json/array-scan.js';
import type { OutputObjects } from '../sinks/types.js';

/** A decision read back from an output: its text as stored, and its value (for filtering only). */
export interface StoredDecision {
  text: string;
  decision: Record<string, unknown>;
}

/** Whether an object is Parquet (`format: parquet` names them `.parquet`), read by `parquetDecisions`. */
export function isParquetKey(key: string): boolean {
  return key.endsWith('.parquet');
}

/**
 * The decisions of a Parquet object, each as the JSON text its row gives back (src/formats/decision-text.ts
 * says what is exact), read by ranges: the footer, then a row group at a time, and with `decisionId` only
 * that column first. The whole object is never in memory.
 */
export async function* parquetDecisions(
  objects: Pick<OutputObjects, 'size' | 'readRange'>,
  key: string,
  decisionId?: string,
): AsyncGenerator<StoredDecision> {
  // loaded with the first Parquet object read: a server that never reads one (the console's lookup over NDJSON,
  // or none) does not hold the Parquet reader's code
  const { parquetDecisionTexts } = await import('../formats/parquet-decisions-reader.js');
  const source = {
    byteLength: await objects.size(key),
    read: (start: number, end: number) => objects.readRange(key, start, end),
  };
  for await (const text of parquetDecisionTexts(source, { decisionId }))
    yield { text, decision: JSON.parse(text) as Record<string, unknown> };
}

/**
 * The decisions of an object of JSON text, whatever its format: NDJSON / JSON lines, a JSON array or one
 * decision, gzip or not. Each keeps its exact text (so what is printed is what is stored: number text, key order), cut out of
 * a JSON array by its elements' spans; JSON.parse (iterative in V8, so any depth) gives the values to filter on.
 */
export function decisionsOf(key: string, body: Buffer): StoredDecision[] {
  const bytes = key.endsWith('.gz') || (body[0] === 0x1f && body[1] === 0x8b) ? gunzipSync(body) : body;
  const text = bytes.toString('utf8').trim();
  if (text === '') return [];
  if (text.startsWith('[')) {
    const values = JSON.parse(text) as Array<Record<string, unknown>>;
    const texts = arrayElementTexts(Buffer.from(text));
    return values.map((decision, i) => ({ text: texts[i]!, decision }));
  }
  const lines =
    key.endsWith('.json') && !text.includes('\n')
      ? [text]
      : text
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l !== '');
  return lines.map((line) => ({ text: line, decision: JSON.parse(line) as Record<string, unknown> }));
}
