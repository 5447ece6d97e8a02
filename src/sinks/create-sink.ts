import type { HttpOutputConfig, OutputConfig, ServiceOutputConfig } from '../config/schema.js';
import type { Sink } from './types.js';
import { FileSink } from './file/file-sink.js';
import { S3Sink, s3ConnectionOf } from './s3/s3-sink.js';
import { ConsoleSink } from './console/console-sink.js';
import { HttpSink } from './http/http-sink.js';
import type { RequestLimits } from './http/request-pieces.js';
import { redactUrl } from './redact-url.js';

export function createSink(output: OutputConfig): Sink {
  switch (output.type) {
    case 's3': return new S3Sink(s3ConnectionOf(output));
    case 'file': return new FileSink(output.path);
    case 'console': return new ConsoleSink();
    case 'http': return new HttpSink({ ...output, limits: limitsOf(output), compressionLevel: output.compression_level });
    case 'service': return new HttpSink({
      url: serviceUrl(output),
      headers: { ...(output.token ? { authorization: `Bearer ${output.token}` } : {}), ...output.headers },
      timeout: output.timeout,
      limits: limitsOf(output),
      compressionLevel: output.compression_level,
    });
  }
}

/** Where an output writes, for `sluice check` and logs, without making its client; URLs without their secrets. */
export function targetOf(output: OutputConfig): string {
  switch (output.type) {
    case 's3': return `s3://${output.bucket}`;
    case 'file': return `file://${output.path}`;
    case 'console': return 'console://stdout';
    case 'http': return redactUrl(output.url);
    case 'service': return redactUrl(serviceUrl(output));
  }
}

function limitsOf(output: HttpOutputConfig | ServiceOutputConfig): RequestLimits {
  return { maxBytes: output.max_request_bytes, maxDecisions: output.max_request_decisions };
}

/** OPA's `<service url>/<resource>`. */
function serviceUrl(output: ServiceOutputConfig): string {
  return `${output.url.replace(/\/+$/, '')}/${output.resource.replace(/^\/+/, '')}`;
}
