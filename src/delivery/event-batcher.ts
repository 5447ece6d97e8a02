import type { DestinationBatching } from '../sinks/destination-types.js';
import { destinationKey, type Destination, type EventBatch, type Store } from '../store/types.js';
import { storageErrorCode } from '../sqlite/storage-errors.js';
import { extension } from './encode.js';
import { eventBatchObject } from './event-batch-object.js';
import { DEFAULT_KEY_TEMPLATE, keyValues, renderKey } from './object-keys.js';
import type { RetryPolicy } from './attempts.js';
import { attemptUnit, type DestinationDelivery } from './destination-attempt.js';
import { RecordHolds } from './record-holds.js';
import { EndedWhileReading } from './ended-while-reading.js';
import { BatchStates } from './batching/lifecycle.js';
import { OpenBatches, type BatchLimits, type OpenBatch } from './batching/open-batches.js';

/** Pending deliveries a destination's batching reads per pass: bounds the work of one pass. */
const READ_LIMIT = 20_000;
/** How often batches are looked at: publishes arrive far more often, and a batch needs none of them at once. */
const TICK_MS = 250;
/**
 * How often everything unbatched is read again from the first: for deliveries the reads after the last seq
 * seen do not find (a seal that another node's overlapped and refused; on PostgreSQL, a delivery whose seq was
 * taken before one already read but committed after it). Retried ones are read at every look (unbatched).
 */
const RESCAN_MS = 10_000;

/** Deliveries of one topic and UTC hour waiting for their batch to close (count: seqs.length; openedAt: the oldest's arrival). */
interface OpenGroup extends OpenBatch {
  topic: string;
  hour: string;
  seqs: number[];
  /** It holds a delivery made pending again by POST /retry, which was in a batch before. */
  retried: boolean;
}

/** A destination's open groups and how far its deliveries have been read (by destinationKey: ids are unique per tenant only). */
interface BatchingState {
  readAfter: number;
  open: OpenBatches<OpenGroup>;
  inOpen: Set<number>;
  rescannedAt: number;
}

/**
 * Batched destinations (`config.batching`): few large objects in the core outputs' layout instead of one
 * per event. Pending deliveries are grouped per topic and UTC hour; a group is sealed (recorded, fsync'd,
 * with its key) when it reaches max_events or max_bytes or is max_age old, then uploaded; a retry rewrites
 * the same key with the same events. One attempt is logged per batch, on the skeleton per-event delivery
 * shares (destination-attempt.ts, which says what differs between them). The batching core (batching/) holds the
 * open groups and their limits; a batch's lifecycle (batching/lifecycle.ts) runs open -> sealed (in the store)
 * -> in_flight -> done, or back to sealed when its attempt failed and it waits for the next one.
 *
 * A batch of retried deliveries (POST /retry of events of a batch) gets a key of its own: its first and last
 * deliveries may be those of the batch they were in, so `-r<n>` follows them, n counting such batches in the
 * store. It must neither take the recorded key of that batch nor overwrite its object, which may hold events
 * that were not retried.
 *
 * While the store cannot write (a full disk) nothing is sealed nor uploaded: neither could be recorded. An
 * upload whose attempt could not be recorded stays pending and is attempted again after a wait that grows.
 */
export class EventBatcher {
  /** Batches being attempted, by key; the others are sealed in the store, and not remembered here. */
  private readonly batches = new BatchStates<string>();
  private readonly states = new Map<string, BatchingState>();
  /** Batches whose last attempt could not be recorded, by key: not attempted again before their wait is over. */
  private readonly holds = new RecordHolds<string>();
  /** Batches whose uploads ended while due ones were read: left out of that answer. */
  private readonly endedWhileReading = new EndedWhileReading<string>();
  /**
   * A pass is under way. Passes never overlap: one keeps its open groups across the store's answers (reads,
   * seals), and a second would seal the same group again.
   */
  private passing = false;
  private active = false;
  private lastPass = 0;

  /** `retry`: the destinations' policy (max_retries or retry.schedule), the dispatcher's too. */
  constructor(
    private readonly store: Store,
    private readonly delivery: DestinationDelivery,
    private readonly retry: RetryPolicy,
  ) {}

  /** Milliseconds until the batcher wants to look again. */
  nextTickIn(): number {
    return this.active ? TICK_MS : Infinity;
  }

  async pump(now: number): Promise<void> {
    if (this.passing || now - this.lastPass < TICK_MS) return;
    this.lastPass = now;
    this.passing = true;
    try {
      await this.pass(now);
    } finally {
      this.passing = false;
    }
  }

  private async pass(now: number): Promise<void> {
    const destinations = await this.store.batchedDestinations();
    this.active = destinations.length > 0;
    const keys = new Set(destinations.map((d) => destinationKey(d.tenant_id, d.id)));
    for (const key of this.states.keys()) if (!keys.has(key)) this.states.delete(key);
    this.holds.forget(now);
    if (!this.active || !(await this.store.writable())) return;
    for (const destination of destinations) {
      // one destination's failure to seal (its batches stay open, and are sealed by a later pass) holds back no other
      try {
        const batching = this.delivery.sinks.typeOf(destination).batching(destination);
        // the store lists the destinations with config.batching: a type always says so too
        if (batching) await this.seal(destination, batching, now);
      } catch (err) {
        const code = storageErrorCode(err);
        this.delivery.failures.error(
          `seal:${code ?? destinationKey(destination.tenant_id, destination.id)}`,
          { err, code, tenant_id: destination.tenant_id, destination_id: destination.id },
          code
            ? 'sealing a batch failed: the store cannot write to its data_dir; sealed by a later pass'
            : 'sealing a batch failed; sealed by a later pass',
        );
        if (code) return;
      }
    }
    const byKey = new Map(destinations.map((d) => [destinationKey(d.tenant_id, d.id), d]));
    const { answer: due, ended } = await this.endedWhileReading.during(() => this.store.dueBatches(now));
    // Read but not uploaded now: given back, so that a store shared by several nodes does not keep them claimed
    // for this one until the lease ends (one in flight here stays claimed: it is this node's upload).
    const notStarted: string[] = [];
    for (const batch of due) {
      if (this.batches.state(batch.key) !== undefined) continue;
      const destination = byKey.get(destinationKey(batch.tenant_id, batch.destination_id));
      if (!destination || ended.has(batch.key) || this.holds.held(batch.key, now)) {
        notStarted.push(batch.key);
        continue;
      }
      this.batches.enter(batch.key, 'sealed');
      this.batches.move(batch.key, 'in_flight');
      void this.delivery.work.track(this.upload(destination, batch)).then((end) => {
        this.endedWhileReading.end(batch.key);
        // pending: sealed in the store until it is due again
        this.batches.move(batch.key, end === 'pending' ? 'sealed' : 'done');
        if (end === 'pending') this.batches.forget(batch.key);
      });
    }
    if (notStarted.length > 0)
      this.delivery.work
        .track(this.store.releaseBatches(notStarted))
        .catch((err: unknown) =>
          this.delivery.failures.warn(
            'release-batches',
            { err },
            'giving back batches not uploaded failed (their claims expire)',
          ),
        );
  }

  /** Reads new deliveries into open groups and seals the groups that are full or old enough. */
  private async seal(destination: Destination, batching: DestinationBatching, now: number): Promise<void> {
    const stateKey = destinationKey(destination.tenant_id, destination.id);
    let state = this.states.get(stateKey);
    if (!state) {
      state = { readAfter: 0, open: new OpenBatches(limitsOf(batching)), inOpen: new Set(), rescannedAt: now };
      this.states.set(stateKey, state);
    }
    // the destination may have been updated since the last pass
    state.open.limits = limitsOf(batching);
    const { open } = state;
    const close = async (streamKey: string, group: OpenGroup) => {
      const first = group.seqs[0]!;
      const last = group.seqs[group.seqs.length - 1]!;
      const values = keyValues({
        output: destination.id,
        bufferId: this.store.id,
        partition: group.topic,
        hour: group.hour,
        first,
        last,
        ext: extension(batching),
      });
      let key = renderKey(DEFAULT_KEY_TEMPLATE, values);
      // a key already recorded can only be another batch's: never taken again (the primary key would refuse it)
      const retried = group.retried || (await this.store.batchExists(key));
      if (retried)
        key = renderKey(DEFAULT_KEY_TEMPLATE, {
          ...values,
          batch: `${values.batch}-r${await this.store.nextRetriedBatch()}`,
        });
      // open -> sealed in one step: the store records it durably, and only then is it no longer open
      await this.store.sealBatch(
        {
          key,
          tenant_id: destination.tenant_id,
          destination_id: destination.id,
          first_seq: first,
          last_seq: last,
          count: group.seqs.length,
          attempts: 0,
          next_attempt_at: now,
        },
        group.seqs,
        retried,
      );
      open.close(streamKey);
      for (const seq of group.seqs) state.inOpen.delete(seq);
    };
    const rescan = now - state.rescannedAt >= RESCAN_MS;
    if (rescan) state.rescannedAt = now;
    for (const row of await this.store.unbatched(
      destination.tenant_id,
      destination.id,
      rescan ? 0 : state.readAfter,
      READ_LIMIT,
    )) {
      state.readAfter = Math.max(state.readAfter, row.seq);
      if (state.inOpen.has(row.seq)) continue;
      const hour = new Date(row.time_ms).toISOString().slice(0, 13);
      const topic = safeTopic(row.topic);
      const streamKey = `${topic}\u0000${hour}`;
      const group =
        open.get(streamKey) ??
        open.open(streamKey, {
          topic,
          hour,
          seqs: [],
          count: 0,
          bytes: 0,
          openedAt: row.received_at_ms,
          retried: false,
        });
      group.seqs.push(row.seq);
      group.count++;
      if (row.retried === 1) group.retried = true;
      state.inOpen.add(row.seq);
      // a line each, with its newline
      group.bytes += row.bytes + 1;
      if (open.full(group)) await close(streamKey, group);
    }
    // closing removes from the map: the due ones are listed first
    const due = [...open.entries()].filter(([, group]) => open.due(group, now));
    for (const [streamKey, group] of due) await close(streamKey, group);
  }

  /**
   * Uploads a batch and records the attempt, on the skeleton every destination attempt runs
   * (destination-attempt.ts); never rejects. 'pending' when it is to be attempted again.
   */
  private upload(destination: Destination, batch: EventBatch): Promise<'pending' | 'ended'> {
    return attemptUnit(this.delivery, this.holds, batch.key, async () => {
      const type = this.delivery.sinks.typeOf(destination);
      const batching = type.batching(destination);
      if (!batching) return undefined;
      const events = await this.store.batchEvents(batch);
      return {
        kind: 'batch',
        destination,
        attempt: batch.attempts + 1,
        manual: false,
        eventId: null,
        events: events.length,
        policy: this.retry,
        // named when it was sealed, from its first and last deliveries
        key: batch.key,
        name: async () => batch.key,
        fix: async () => {},
        wanted: async () => true,
        encode: (key) => eventBatchObject(events, batching, key),
        failureCode: () => undefined,
        response: (key) => ({ ...type.location(destination, key ?? batch.key), events: events.length }),
        record: async (attempt, next) => {
          await this.store.recordBatchAttempt(
            attempt,
            { key: batch.key, attempts: next.attempts, next_attempt_at: next.next_attempt_at },
            next.status,
          );
        },
        fields: { tenant_id: destination.tenant_id, destination_id: destination.id, key: batch.key },
      };
    });
  }
}

function limitsOf(batching: DestinationBatching): BatchLimits {
  return { maxEvents: batching.max_events, maxBytes: batching.max_bytes, maxAge: batching.max_age };
}

/** A topic as one segment of an object key; never "." or "..", which servers resolve as dot segments of the path. */
function safeTopic(topic: string): string {
  const safe = topic.replace(/[^A-Za-z0-9._=-]/g, '_') || '_';
  return safe === '.' || safe === '..' ? safe.replace(/\./g, '_') : safe;
}
