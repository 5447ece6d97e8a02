import { z } from 'zod';
import { duration } from '../../config/fields.js';
import { outputProvider } from '../provider.js';
import { redactUrl } from '../redact-url.js';
import { HttpSink } from './http-sink.js';
import { headers, limitsOf, noUserinfo, requestBytes, requestDecisions, USERINFO_MESSAGE } from './request-fields.js';

/** POSTs each batch to a URL; 2xx is delivered, 408/429/5xx and network errors are retried, other 4xx fail loudly. */
export const httpOutput = outputProvider({
  type: 'http',
  fields: {
    url: z.url({ message: 'must be a URL such as http://127.0.0.1:9000/ingest' }).refine(noUserinfo, USERINFO_MESSAGE),
    headers,
    timeout: duration('30s'),
    /** Unset: a batch is one request (cut in two on each 413); set: batches go in requests of at most this much. */
    max_request_bytes: requestBytes.optional(),
    max_request_decisions: requestDecisions.optional(),
  },
  createSink: (o) => new HttpSink({ ...o, limits: limitsOf(o), compressionLevel: o.compression_level }),
  target: (o) => redactUrl(o.url),
});
