import type { OutputConfig } from '../config/schema.js';
import type { Sink } from './types.js';
import { FileSink } from './file/file-sink.js';
import { S3Sink, s3ConnectionOf } from './s3/s3-sink.js';

export function createSink(output: OutputConfig): Sink {
  switch (output.type) {
    case 's3': return new S3Sink(s3ConnectionOf(output));
    case 'file': return new FileSink(output.path);
  }
}
