import { gunzipSync } from 'node:zlib';
import type { Sink, StoredObject } from '../types.js';

/**
 * Writes each object's decisions to standard output, one JSON document a line: for trying rules and
 * layouts, and for log pipelines that read a container's stdout. Logs go to stderr, so stdout holds only data.
 */
export class ConsoleSink implements Sink {
  readonly target = 'console://stdout';

  async put(object: StoredObject): Promise<void> {
    const body = object.contentEncoding === 'gzip' ? gunzipSync(object.body) : object.body;
    const text = body.toString('utf8');
    const lines = text.endsWith('\n') ? text : `${text}\n`;
    if (!process.stdout.write(lines)) await new Promise((resolve) => process.stdout.once('drain', resolve));
  }

  close(): void {}
}
