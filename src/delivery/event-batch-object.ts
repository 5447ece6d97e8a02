import type { StoredEvent } from '../store/types.js';
import type { StoredObject } from '../sinks/types.js';
import { encodeLines, extension, type Encoding } from './encode.js';
import { parquetEventsObject } from './parquet-encoder.js';

/**
 * The object of a batched destination's batch: its events' data as NDJSON or a JSON array (gzip or not), or a
 * Parquet file of the events (id, topic, time, metadata, data).
 *
 * The batch's key was fixed when it was sealed, its extension from the encoding then; a tenant may change
 * `config.batching` before the upload (or its retry). What the key says wins, so that an object's name always
 * tells what it holds: a `.parquet` key gets a Parquet file, another key lines or an array.
 */
export async function eventBatchObject(
  events: readonly StoredEvent[],
  batching: Encoding,
  key: string,
): Promise<StoredObject> {
  const encoding = encodingOfKey(key, batching);
  if (encoding.format === 'parquet') {
    const { unprocessable: _, ...object } = await parquetEventsObject(events, encoding, key);
    return object;
  }
  return encodeLines(
    events.map((e) => Buffer.from(`${oneLine(e.data)}\n`)),
    encoding,
    key,
  );
}

/** The encoding an object under `key` must have: the configured one when its extension fits the key. */
export function encodingOfKey(key: string, configured: Encoding): Encoding {
  if (key.endsWith(`.${extension(configured)}`)) return configured;
  if (key.endsWith('.parquet')) return { format: 'parquet', compression: 'zstd' };
  const gzip = key.endsWith('.gz');
  const plain = gzip ? key.slice(0, -3) : key;
  return { format: plain.endsWith('.ndjson') ? 'ndjson' : 'json_array', compression: gzip ? 'gzip' : 'none' };
}

/**
 * Data as one NDJSON line. Data is kept as it was published, which may be pretty-printed; a raw CR or LF can
 * only be whitespace between tokens (JSON strings cannot hold them), so a space in its place changes nothing
 * a JSON reader sees.
 */
function oneLine(data: string): string {
  return data.includes('\n') || data.includes('\r') ? data.replace(/[\r\n]/g, ' ') : data;
}
