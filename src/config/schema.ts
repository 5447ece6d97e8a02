import { isIPv6 } from 'node:net';
import { z } from 'zod';
import { batchWith, duration, durationItem, optionalText, size } from './fields.js';
import { checkKeyTemplate, DEFAULT_KEY_TEMPLATE } from '../delivery/object-keys.js';
import { isKeyPreset, keyLayout, KEY_PRESETS } from '../delivery/key-layouts.js';
import { rulesSchema } from '../transforms/rules-schema.js';
import { allowedEndpoint } from '../sinks/endpoint-guard.js';
import type { OutputProvider, ProviderConfig } from '../sinks/provider.js';
import { OUTPUT_PROVIDERS } from '../sinks/registry.js';
import { DEFAULT_ROW_GROUP_BYTES } from '../formats/parquet-options.js';

const listen = z
  .string()
  .default('127.0.0.1:8181')
  .refine(
    (v) => /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(v),
    'must be host:port, e.g. 127.0.0.1:8181 or [::1]:8181',
  );

/**
 * Objects for a query engine (Athena, DuckDB, Trino): large ones, since each costs a request to write and to
 * read, and fresh within a minute. A stream (partition, hour) that gets fewer than 64 MiB a minute closes by
 * age: with 100 partitions at 75,000 decisions/s that is ~45,000 decisions an object, ~22 PUTs per million.
 */
const batch = batchWith(1_000_000, '64MiB', '60s');

const retry = z
  .strictObject({
    initial_backoff: duration('1s').refine((v) => v > 0, 'must be greater than 0'),
    max_backoff: duration('30s').refine((v) => v > 0, 'must be greater than 0'),
  })
  .prefault({});

const outputName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, "_" or "-"');

/** The fields every output has; each provider's own follow its `type` (sinks/<type>/provider.ts). */
const sharedOutput = z.strictObject({
  name: outputName,
  batch,
  format: z.enum(['ndjson', 'json_array', 'parquet']).default('ndjson'),
  /**
   * gzip or none for NDJSON and JSON arrays (default gzip); for Parquet the compression inside the file:
   * zstd (its default, set by withParquetDefaults), snappy, gzip or none.
   */
  compression: z.enum(['gzip', 'none', 'zstd', 'snappy']).default('gzip'),
  /**
   * zlib level 1 (fastest) .. 9 (smallest). Unset: gzip NDJSON objects are the chunks as stored in the buffer
   * (compressed once at ingest, buffer.compression_level); other objects, level 6. Set, every object is
   * compressed again at this level.
   */
  compression_level: z.number().int().min(1).max(9).optional(),
  /** Format parquet: a row group is written once its decisions' JSON reaches row_group_bytes. */
  parquet: z
    .strictObject({
      row_group_bytes: size(`${DEFAULT_ROW_GROUP_BYTES}`).refine(
        (v) => v >= MIN_ROW_GROUP_BYTES && v <= MAX_ROW_GROUP_BYTES,
        'must be between 64KiB and 32MiB',
      ),
    })
    .optional(),
  /** A preset (hive, eopa, eopa-per-decision, hourly-per-decision, outpost) or a template of {placeholders}. */
  key: z
    .string()
    .default(DEFAULT_KEY_TEMPLATE)
    .superRefine((template, ctx) => {
      if (isKeyPreset(template)) return;
      const problem = checkKeyTemplate(template);
      if (problem)
        ctx.addIssue({ code: 'custom', message: `${problem} (or name a preset: ${KEY_PRESETS.join(', ')})` });
    }),
  retry,
  upload_concurrency: z.number().int().min(1).max(64).default(4),
  /** This output's drop and mask rules, applied after the global ones. */
  rules: rulesSchema.optional(),
});

/**
 * An output type's schema: the shared fields, `type`, then the provider's fields. A shared field the provider
 * names again (a console output's `compression`) keeps its place and gets the provider's schema, so fields
 * and their problems come in the same order for every type.
 */
function outputSchema<Type extends string, Fields extends z.ZodRawShape>(provider: OutputProvider<Type, Fields>) {
  const schema = sharedOutput.extend({ type: z.literal(provider.type), ...provider.fields });
  const { check } = provider;
  return schema.superRefine((o, ctx) => {
    checkFormat(provider, o as unknown as z.output<typeof sharedOutput>, ctx);
    check?.(o as unknown as ProviderConfig<Fields>, ctx);
  });
}

/** Parquet's row groups: Athena reads 64-128 MiB ones best, but the encoder's memory grows with them (README). */
const MIN_ROW_GROUP_BYTES = 64 * 1024;
const MAX_ROW_GROUP_BYTES = 32 * 1024 * 1024;

/** The types whose provider stores objects, for messages: `s3, file`. */
const objectTypes = () =>
  OUTPUT_PROVIDERS.filter((p) => p.storesObjects)
    .map((p) => p.type)
    .join(', ');

/** What format, compression and the Parquet settings allow together, and where. */
function checkFormat(provider: OutputProvider, o: z.output<typeof sharedOutput>, ctx: z.RefinementCtx): void {
  const problem = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  if (o.format !== 'parquet') {
    if (o.compression === 'zstd' || o.compression === 'snappy')
      problem('compression', `${o.compression} is for format: parquet; NDJSON and JSON arrays take gzip or none`);
    if (o.parquet !== undefined) problem('parquet', 'is for format: parquet');
    return;
  }
  if (!provider.storesObjects)
    problem(
      'format',
      `parquet is for outputs that store objects (${objectTypes()}): a ${provider.type} output writes NDJSON or JSON arrays only`,
    );
  if (o.compression_level !== undefined)
    problem(
      'compression_level',
      "is for gzip NDJSON and JSON arrays: a Parquet file's compression is set by compression (zstd, snappy, gzip, none)",
    );
  if (keyLayout(o.key).perDecision)
    problem(
      'key',
      `${o.key} writes one JSON document per decision; format parquet writes batches (the hive layout, eopa or a template)`,
    );
}

/**
 * The default compression of a Parquet output is zstd, not gzip: filled in before the output is parsed (the
 * field's own default is gzip, for NDJSON and JSON arrays). Only for the types that can write Parquet, so that
 * another type is told about its format, not about a compression it was never given.
 */
function withParquetDefaults(input: unknown): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
  const o = input as Record<string, unknown>;
  const writesParquet = OUTPUT_PROVIDERS.some((p) => p.type === o.type && p.storesObjects);
  return writesParquet && o.format === 'parquet' && o.compression === undefined ? { ...o, compression: 'zstd' } : o;
}

/** The schemas of a list of providers, typed one by one, so that OutputConfig is a union narrowed by `type`. */
type OutputSchemas<Providers> = {
  [K in keyof Providers]: Providers[K] extends OutputProvider<
    infer Type extends string,
    infer Fields extends z.ZodRawShape
  >
    ? ReturnType<typeof outputSchema<Type, Fields>>
    : never;
};

const OUTPUT_TYPES = OUTPUT_PROVIDERS.map((p) => p.type);
const outputSchemas = OUTPUT_PROVIDERS.map((p) => outputSchema(p as OutputProvider)) as unknown as OutputSchemas<
  typeof OUTPUT_PROVIDERS
>;

const output = z.preprocess(
  withParquetDefaults,
  z.discriminatedUnion('type', outputSchemas, {
    error: (issue) => (issue.code === 'invalid_union' ? `type must be one of: ${OUTPUT_TYPES.join(', ')}` : undefined),
  }),
);

/** Tenant ids: what fits in a URL path segment without escaping. */
export const TENANT_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

const decisionTenant = z
  .strictObject({
    tenant: z.string().regex(TENANT_ID, 'must be 1 to 128 of A-Z a-z 0-9 . _ : @ -'),
    token: optionalText,
    partition: optionalText,
  })
  .refine((m) => Boolean(m.token) !== Boolean(m.partition), 'set exactly one of token or partition');

const api = z
  .strictObject({
    admin_key: optionalText,
    /** Accepts an API without admin_key on a listen address that is not loopback (refused otherwise). */
    open: z.boolean().default(false),
    jwt_secret: optionalText,
    encryption_key: optionalText,
    topics: z.array(z.string().min(1)).default([]),
    idempotency_window: duration('1h'),
    max_pending_deliveries: z.number().int().positive().default(1_000_000),
    /** Tenant destinations reach public addresses only; each entry (CIDR, IP or host name) opens more. README "Security". */
    destinations: z
      .strictObject({
        allowed_endpoints: z.array(allowedEndpoint).default([]),
      })
      .prefault({}),
    /** What one tenant may hold, so that no tenant can exhaust what all of them share. */
    quotas: z
      .strictObject({
        destinations_per_tenant: z.number().int().positive().default(20),
        /** Each string map (tenant metadata, a destination's metadata and delivery_metadata, an event's metadata): UTF-8 bytes of keys and values. */
        metadata_bytes: size('4KiB').refine((v) => v > 0, 'must be greater than 0'),
        /** A tenant's share of api.max_pending_deliveries: one tenant's backlog cannot push every other tenant into 429. */
        pending_deliveries_per_tenant: z.number().int().positive().default(100_000),
      })
      .prefault({}),
    delivery_concurrency: z.number().int().min(1).max(256).default(8),
    /** The budget of one key_template evaluation (its own process): README "The aws_s3 destination". */
    key_templates: z
      .strictObject({
        time_limit: duration('1s').refine((v) => v >= 10 && v <= 600_000, 'must be between 10ms and 10m'),
        max_memory: size('64MiB').refine(
          (v) => v >= 16 * 2 ** 20 && v <= 4 * 2 ** 30,
          'must be between 16MiB and 4GiB',
        ),
      })
      .prefault({}),
    retry: z
      .strictObject({
        max_retries: z.number().int().min(0).max(1000).default(10),
        initial_backoff: duration('30s').refine((v) => v > 0, 'must be greater than 0'),
        max_backoff: duration('1h').refine((v) => v > 0, 'must be greater than 0'),
        schedule: z.array(durationItem).min(1, 'list at least one wait, or leave schedule out').optional(),
      })
      .prefault({}),
    log_retention: z
      .strictObject({
        max_age: duration('7d').refine((v) => v > 0, 'must be greater than 0'),
        max_count: z.number().int().positive().default(100_000),
      })
      .prefault({}),
  })
  .prefault({});

/**
 * Where the control plane (tenants, destinations, events, deliveries, attempts) is kept: the embedded SQLite
 * database in data_dir (one node), or PostgreSQL, shared by the nodes of a cluster. README "Running several nodes".
 */
const store = z
  .strictObject({
    type: z.enum(['sqlite', 'postgres']).default('sqlite'),
    /** postgres://user:password@host:5432/database; `${SLUICE_STORE_URL}` keeps the password out of the file. */
    url: optionalText,
    /** Connections to PostgreSQL at most, per node. */
    pool: z.number().int().min(1).max(1000).default(10),
    /** The schema of the store's tables (created if missing); one per cluster. */
    schema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be 1 to 63 of a-z, 0-9 and _, not starting with a digit')
      .default('sluice'),
    /**
     * How long a node's claim on a delivery or batch holds: another node takes it over once it is over (the
     * node died). Longer than an upload may take (60 s is the destinations' request timeout), or a slow upload
     * may be made twice, to the same key.
     */
    lease: duration('2m').refine((v) => v >= 1000, 'must be at least 1s'),
    /** This node's name in claims and attempts; unset: made once and kept in data_dir (the host name and a suffix). */
    node_id: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1 to 128 of A-Z a-z 0-9 . _ : -')
      .optional(),
  })
  .prefault({})
  .superRefine((s, ctx) => {
    if (s.type === 'postgres' && !s.url)
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'is required with type: postgres (postgres://...)' });
  });

export const configSchema = z
  .strictObject({
    listen,
    data_dir: z.string().min(1).default('./data'),
    buffer: z
      .strictObject({
        max_bytes: size('1GiB').refine((v) => v > 0, 'must be greater than 0'),
        /**
         * gzip level of decisions as stored (1 fastest .. 9 smallest; 0 stores them uncompressed). Compressed
         * once, at ingest: outputs that write gzip NDJSON without rules send the stored bytes as they are.
         */
        compression_level: z.number().int().min(0).max(9).default(1),
      })
      .prefault({}),
    ingest: z
      .strictObject({
        tokens: z.array(z.string().min(1, 'a token must not be empty')).default([]),
        max_body_bytes: size('8MiB').refine((v) => v > 0, 'must be greater than 0'),
        max_decoded_bytes: size('128MiB').refine((v) => v > 0, 'must be greater than 0'),
        /** OPA's chunks hold a few hundred to a few thousand decisions; far more is a mistake or an attack (413). */
        max_decisions_per_request: z.number().int().min(1).default(100_000),
        /**
         * Decoded bytes all requests together may hold between decoding and their durable commit: requests beyond
         * it wait their turn (at most `max_wait`), then get 429. Keeps memory bounded whatever the clients send.
         */
        max_decoded_in_flight: size('64MiB').refine((v) => v > 0, 'must be greater than 0'),
        /** How long a request may wait for room (decoded bytes in flight) before it is answered 429. */
        max_wait: duration('10s'),
        /** Worker threads that decode requests; default: one per CPU. */
        decode_threads: z.number().int().min(1).max(64).optional(),
        /** OPA's re-sends (the same request body, or a decision_id again) within the window are not stored twice; 0 turns it off. */
        dedupe: z
          .strictObject({
            window: duration('10m'),
            max_entries: z.number().int().min(0).default(500_000),
          })
          .prefault({}),
        /** Decisions that also become events of topic `decisions` for a tenant's destinations. */
        tenants: z.array(decisionTenant).default([]),
      })
      .prefault({}),
    api,
    store,
    outputs: z.array(output).optional(),
    /** Drop and mask rules for every output, applied before each output's own. */
    rules: rulesSchema.optional(),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .prefault({}),
    shutdown_timeout: duration('30s'),
    /** A bearer token for /metrics and /ready (unset: open, for probes and Prometheus; /health stays open). */
    observability: z
      .strictObject({
        token: optionalText,
      })
      .prefault({}),
    /** The HTTP server's own bounds: slow or idle clients cannot hold connections and memory forever. */
    http: z
      .strictObject({
        /** Time to receive a whole request, headers and body (a client trickling bytes is cut off). */
        request_timeout: duration('60s').refine((v) => v > 0, 'must be greater than 0'),
        /** Time to receive the headers of a request. */
        headers_timeout: duration('20s').refine((v) => v > 0, 'must be greater than 0'),
        /** An idle keep-alive connection is closed after this long. */
        keep_alive_timeout: duration('65s').refine((v) => v > 0, 'must be greater than 0'),
        /** Connections open at once; more are refused until some close. */
        max_connections: z.number().int().min(1).default(1024),
        /**
         * Host names (or IPs) the API and console answer to besides the listen address, against DNS rebinding;
         * `*.example.com` takes subdomains, `*` any host. README "Security".
         */
        allowed_hosts: z
          .array(
            z
              .string()
              .refine(
                (h) =>
                  h === '*' ||
                  /^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/.test(h) ||
                  isIPv6(h.replace(/^\[(.*)\]$/, '$1')),
                'must be a host name or IP without a port, *.domain, or *',
              ),
          )
          .default([]),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    (c.outputs ?? []).forEach((o, i) => {
      if (seen.has(o.name))
        ctx.addIssue({
          code: 'custom',
          path: ['outputs', i, 'name'],
          message: `output name "${o.name}" is used twice`,
        });
      seen.add(o.name);
    });
    c.ingest.tenants.forEach((m, i) => {
      if (m.token && c.ingest.tokens.length > 0 && !c.ingest.tokens.includes(m.token)) {
        ctx.addIssue({
          code: 'custom',
          path: ['ingest', 'tenants', i, 'token'],
          message: 'is not one of ingest.tokens: OPA could not send with it',
        });
      }
    });
  });

export type RawConfig = z.output<typeof configSchema>;
export type OutputConfig = z.output<typeof output>;
export type ApiConfig = z.output<typeof api>;
export type Config = Omit<RawConfig, 'outputs'> & {
  outputs: OutputConfig[];
  /** What to tell at start-up about how the configuration was read (e.g. an Enterprise OPA config). */
  notes: string[];
};
