import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BufferStats, DecisionBuffer } from '../buffer/types.js';
import type { Store } from '../store/types.js';

/** Label values a client chooses (partitions) are capped: past this many distinct ones they count as `_other`. */
const MAX_PARTITION_LABELS = 100;

/** What an output reports as it works. */
export interface OutputMetrics {
  delivered(output: string, events: number, bytes: number): void;
  dropped(output: string, events: number): void;
  failed(output: string, permanent: boolean): void;
  uploadSeconds(output: string, seconds: number): void;
  /** Decisions an output could not write as data (a rule failed on them, or their chunk is corrupt): kept aside. */
  deadLettered(output: string, reason: string, events: number): void;
}

/** What /metrics reads of each output at scrape time. */
export interface OutputGauges {
  name: string;
  type: string;
  state: string;
  cursor: number;
}

/**
 * Prometheus metrics (prom-client). Names follow Prometheus conventions: `sluice_` prefix, `_total` for
 * counters, base units (bytes, seconds). Label values are bounded: partitions beyond the first 100 are
 * `_other`; outputs and sources come from the config.
 */
export class Metrics implements OutputMetrics {
  readonly registry = new Registry();
  /** Running totals for the console's charts (the counters above keep them per label). */
  readonly totals = { ingested: 0, delivered: 0 };
  private readonly partitions = new Set<string>();
  private readonly requests: Counter<'source' | 'partition' | 'code'>;
  private readonly events: Counter<'source' | 'partition'>;
  private readonly bytes: Counter<'source' | 'partition'>;
  private readonly rejected: Counter<'source' | 'reason' | 'code'>;
  private readonly duplicates: Counter<'kind'>;
  private readonly outputEvents: Counter<'output'>;
  private readonly outputObjects: Counter<'output'>;
  private readonly outputBytes: Counter<'output'>;
  private readonly outputDropped: Counter<'output'>;
  private readonly outputFailures: Counter<'output' | 'kind'>;
  private readonly upload: Histogram<'output'>;
  private readonly untimedDecisions: Counter<'partition'>;
  private readonly outputDeadLetter: Counter<'output' | 'reason'>;

  constructor(
    buffer: DecisionBuffer,
    store: Store,
    outputs: () => OutputGauges[],
    decodedInFlight: () => number = () => 0,
    node: { store: string; id: string | null } = { store: 'sqlite', id: null },
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'sluice_ingest_requests_total',
      help: 'Ingest requests answered, by source, partition and HTTP status code.',
      labelNames: ['source', 'partition', 'code'],
      registers,
    });
    this.events = new Counter({
      name: 'sluice_ingest_events_total',
      help: 'Decisions and events accepted (durable), by source and partition.',
      labelNames: ['source', 'partition'],
      registers,
    });
    this.bytes = new Counter({
      name: 'sluice_ingest_bytes_total',
      help: 'Request body bytes accepted, as received (compressed), by source and partition.',
      labelNames: ['source', 'partition'],
      registers,
    });
    this.rejected = new Counter({
      name: 'sluice_ingest_rejected_requests_total',
      help: 'Requests refused, by source, reason and HTTP status code (400, 401, 413, 415, 429, ...).',
      labelNames: ['source', 'reason', 'code'],
      registers,
    });
    this.duplicates = new Counter({
      name: 'sluice_ingest_duplicates_total',
      help: 'OPA re-sends acknowledged and not stored again: kind request (a whole body) or decision.',
      labelNames: ['kind'],
      registers,
    });
    this.outputEvents = new Counter({
      name: 'sluice_output_delivered_events_total',
      help: 'Decisions written by each output.',
      labelNames: ['output'],
      registers,
    });
    this.outputObjects = new Counter({
      name: 'sluice_output_delivered_objects_total',
      help: 'Objects (or requests) written by each output.',
      labelNames: ['output'],
      registers,
    });
    this.outputBytes = new Counter({
      name: 'sluice_output_delivered_bytes_total',
      help: 'Bytes written by each output, as sent (compressed).',
      labelNames: ['output'],
      registers,
    });
    this.outputDropped = new Counter({
      name: 'sluice_output_dropped_events_total',
      help: "Decisions an output's drop rules kept out.",
      labelNames: ['output'],
      registers,
    });
    this.outputFailures = new Counter({
      name: 'sluice_output_failures_total',
      help: 'Failed upload attempts (each is retried), by output and kind: transient or permanent.',
      labelNames: ['output', 'kind'],
      registers,
    });
    this.untimedDecisions = new Counter({
      name: 'sluice_ingest_untimed_decisions_total',
      help: 'Decisions accepted whose timestamp is missing or not RFC 3339: stored as sent, filed under the hour they arrived.',
      labelNames: ['partition'],
      registers,
    });
    this.outputDeadLetter = new Counter({
      name: 'sluice_output_dead_letter_events_total',
      help: 'Decisions an output set aside in data_dir/dead-letter instead of writing them (reason rule_failed, corrupt_chunk or too_large).',
      labelNames: ['output', 'reason'],
      registers,
    });
    this.upload = new Histogram({
      name: 'sluice_output_upload_duration_seconds',
      help: 'Duration of successful uploads.',
      labelNames: ['output'],
      registers,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });

    // levels read from the buffer at scrape time
    const bufferGauges: Array<[string, string, (stats: BufferStats) => number]> = [
      ['sluice_buffer_bytes', 'Bytes of undelivered decisions in the buffer.', (b) => b.bytes],
      [
        'sluice_buffer_max_bytes',
        'The buffer bound (buffer.max_bytes): beyond it ingest answers 429.',
        (b) => b.maxBytes,
      ],
      ['sluice_buffer_events', 'Decisions in the buffer that some output has not delivered yet.', (b) => b.events],
      ['sluice_buffer_chunks', 'Chunks (groups of decisions of one request) in the buffer.', (b) => b.chunks],
      [
        'sluice_buffer_oldest_age_seconds',
        'Age of the oldest decision not yet delivered by every output.',
        (b) => (b.oldestReceivedAt === null ? 0 : Math.max(0, (Date.now() - b.oldestReceivedAt) / 1000)),
      ],
    ];
    for (const [name, help, read] of bufferGauges) {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(buffer.stats()));
        },
      });
    }
    // counts the buffer keeps itself since the start, read at scrape time: they only grow
    const bufferCounters: Array<[string, string, (stats: BufferStats) => number]> = [
      [
        'sluice_buffer_corrupt_chunks_total',
        'Buffer chunks found corrupt when read (payload and checksum differ): never uploaded as data.',
        (b) => b.corruptChunks,
      ],
      [
        'sluice_buffer_resets_total',
        'New, empty buffers started at start-up because the old one was lost (--accept-buffer-loss).',
        (b) => b.resets,
      ],
    ];
    for (const [name, help, read] of bufferCounters) {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read(buffer.stats()));
        },
      });
    }
    new Gauge({
      name: 'sluice_output_lag_events',
      help: 'Decisions received that the output has not delivered yet.',
      labelNames: ['output'],
      registers,
      collect() {
        this.reset();
        const last = buffer.lastPosition();
        for (const o of outputs()) this.set({ output: o.name }, Math.max(0, last - o.cursor));
      },
    });
    new Gauge({
      name: 'sluice_output_lag_seconds',
      help: 'Age of the oldest decision the output has not delivered yet (0 when caught up).',
      labelNames: ['output'],
      registers,
      collect() {
        this.reset();
        for (const o of outputs()) {
          const next = buffer.readChunkMetas(o.cursor, 1)[0];
          this.set({ output: o.name }, next ? Math.max(0, (Date.now() - next.receivedAt) / 1000) : 0);
        }
      },
    });
    new Gauge({
      name: 'sluice_output_up',
      help: '1 while the output delivers (state ok), 0 while it retries or fails.',
      labelNames: ['output', 'type'],
      registers,
      collect() {
        this.reset();
        for (const o of outputs()) this.set({ output: o.name, type: o.type }, o.state === 'ok' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'sluice_ingest_decoded_in_flight_bytes',
      help: 'Decoded bytes of requests between decoding and their durable commit (bounded by ingest.max_decoded_in_flight).',
      registers,
      collect() {
        this.set(decodedInFlight());
      },
    });
    // Which node and store a scrape is of: the store's figures (pending deliveries) are the cluster's with
    // PostgreSQL, the rest this node's; joined on this, a dashboard tells the nodes apart by node_id.
    new Gauge({
      name: 'sluice_node_info',
      help: 'Always 1: this node (store.node_id, empty with SQLite) and its store (sqlite or postgres).',
      labelNames: ['node', 'store'],
      registers,
    }).set({ node: node.id ?? '', store: node.store }, 1);
    new Gauge({
      name: 'sluice_events_pending_deliveries',
      help: 'Deliveries of published events to destinations waiting (pending).',
      registers,
      async collect() {
        // a store that cannot be reached leaves the last value (and /ready says so) rather than failing the scrape
        const pending = await store.pendingDeliveries().catch(() => undefined);
        if (pending !== undefined) this.set(pending);
      },
    });
  }

  /** A partition as a label value: the first 100 distinct ones, then `_other`. */
  private partition(partition: string): string {
    if (this.partitions.has(partition)) return partition;
    if (this.partitions.size >= MAX_PARTITION_LABELS) return '_other';
    this.partitions.add(partition);
    return partition;
  }

  request(source: string, partition: string, code: number): void {
    this.requests.inc({ source, partition: this.partition(partition), code: String(code) });
  }

  accepted(source: string, partition: string, events: number, bytes: number): void {
    const labels = { source, partition: this.partition(partition) };
    this.totals.ingested += events;
    this.events.inc(labels, events);
    this.bytes.inc(labels, bytes);
  }

  rejection(source: string, reason: string, code: number): void {
    this.rejected.inc({ source, reason, code: String(code) });
  }

  duplicate(kind: 'request' | 'decision', count = 1): void {
    if (count > 0) this.duplicates.inc({ kind }, count);
  }

  delivered(output: string, events: number, bytes: number): void {
    this.totals.delivered += events;
    this.outputEvents.inc({ output }, events);
    this.outputObjects.inc({ output });
    this.outputBytes.inc({ output }, bytes);
  }

  /** Events written to tenant destinations: in the console's "delivered" with the decisions of the outputs. */
  eventsDelivered(events: number): void {
    this.totals.delivered += events;
  }

  dropped(output: string, events: number): void {
    if (events > 0) this.outputDropped.inc({ output }, events);
  }

  failed(output: string, permanent: boolean): void {
    this.outputFailures.inc({ output, kind: permanent ? 'permanent' : 'transient' });
  }

  uploadSeconds(output: string, seconds: number): void {
    this.upload.observe({ output }, seconds);
  }

  untimed(partition: string, count: number): void {
    if (count > 0) this.untimedDecisions.inc({ partition: this.partition(partition) }, count);
  }

  deadLettered(output: string, reason: string, events: number): void {
    if (events > 0) this.outputDeadLetter.inc({ output, reason }, events);
  }
}
