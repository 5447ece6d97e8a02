import { z } from 'zod';
import { batchWith, duration, optionalText } from '../../config/fields.js';
import { outputProvider, type ProviderConfig } from '../provider.js';
import { redactUrl } from '../redact-url.js';
import { HttpSink } from '../http/http-sink.js';
import {
  headers,
  limitsOf,
  noUserinfo,
  requestBytes,
  requestDecisions,
  USERINFO_MESSAGE,
} from '../http/request-fields.js';

const fields = {
  url: z.url({ message: 'must be the service URL, e.g. http://127.0.0.1:8181' }).refine(noUserinfo, USERINFO_MESSAGE),
  resource: z.string().default('/logs'),
  token: optionalText,
  headers,
  timeout: duration('30s'),
  format: z.literal('json_array').default('json_array'),
  compression: z.literal('gzip').default('gzip'),
  /** A batch of about what OPA holds in memory: 10,000 decisions, 8 MiB uncompressed. */
  batch: batchWith(10_000, '8MiB', '10s'),
  /** OPA's upload_size_limit_bytes: a batch goes in gzip arrays of at most this many compressed bytes... */
  max_request_bytes: requestBytes.default(1024 * 1024),
  /** ... and at most this many decisions (Sluice refuses more than ingest.max_decisions_per_request). */
  max_request_decisions: requestDecisions.default(10_000),
};

/** Forwards to another OPA decision log service as OPA does: a gzip JSON array POSTed to <url><resource>. */
export const serviceOutput = outputProvider({
  type: 'service',
  fields,
  createSink: (o) =>
    new HttpSink({
      url: serviceUrl(o),
      headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...o.headers },
      timeout: o.timeout,
      limits: limitsOf(o),
      compressionLevel: o.compression_level,
    }),
  target: (o) => redactUrl(serviceUrl(o)),
});

/** OPA's `<service url>/<resource>`. */
function serviceUrl(output: ProviderConfig<typeof fields>): string {
  return `${output.url.replace(/\/+$/, '')}/${output.resource.replace(/^\/+/, '')}`;
}
