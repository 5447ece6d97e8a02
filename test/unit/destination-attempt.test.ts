/**
 * The one attempt skeleton of tenant destinations (src/delivery/destination-attempt.ts), for an event (a batch
 * of one) and a batch, against an in-memory sink: what is recorded for a success, a sink's failure and a key
 * that cannot be made (not retried), that a failure to record holds the unit instead of failing it, and that an
 * attempt ended by a stop records nothing.
 */
import { WorkInFlight } from '../../src/delivery/work-in-flight.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { noRetry, retryLimited } from '../../src/delivery/attempts.js';
import { attemptUnit, type DeliveryUnit, type NextAttempt } from '../../src/delivery/destination-attempt.js';
import { RecordHolds } from '../../src/delivery/record-holds.js';
import { RateLimitedLog } from '../../src/observability/rate-limited-log.js';
import { SinkError, type Sink, type StoredObject } from '../../src/sinks/types.js';
import type { Destination, NewAttempt } from '../../src/store/types.js';

const log = pino({ level: 'silent' });

class MemorySink implements Sink {
  readonly target = 'memory://';
  readonly objects: StoredObject[] = [];
  fail: Error | undefined;
  async put(object: StoredObject): Promise<void> {
    if (this.fail) throw this.fail;
    // a copy of the body: its memory is the caller's again once put returns (Sink.put)
    this.objects.push({ ...object, body: Buffer.from(object.body) });
  }
  close(): void {}
}

const destination: Destination = {
  id: 'des_1',
  tenant_id: 'acme',
  type: 'memory',
  topics: ['*'],
  config: {},
  credentials: {},
  delivery_metadata: {},
  metadata: {},
  filter: {},
  disabled_at: null,
  created_at: '2026-01-01T00:00:00Z',
  updated_at: '2026-01-01T00:00:00Z',
};

function setup() {
  const sink = new MemorySink();
  const abort = new AbortController();
  let delivered = 0;
  const ctx = {
    sinks: { sinkOf: () => sink, typeOf: () => assert.fail('the skeleton asks no type') },
    signal: abort.signal,
    log,
    failures: new RateLimitedLog(log),
    delivered: (n: number) => {
      delivered += n;
    },
    work: new WorkInFlight(),
  };
  const records: Array<{ attempt: NewAttempt; next: NextAttempt }> = [];
  const fixed: string[] = [];
  const unit = (over: Partial<DeliveryUnit> = {}): DeliveryUnit => ({
    kind: 'event',
    destination,
    attempt: 1,
    manual: false,
    eventId: 'evt_1',
    events: 1,
    policy: retryLimited({ max_retries: 3, initial_backoff: 100, max_backoff: 1000 }, () => 0.5),
    key: null,
    name: async () => 'k/evt_1.json',
    fix: async (key) => {
      fixed.push(key);
    },
    wanted: async () => true,
    encode: async (key) => ({ key, body: Buffer.from('{"a":1}'), contentType: 'application/json', contentMD5: '' }),
    failureCode: (err) => (err.message.startsWith('template') ? 'key_template' : undefined),
    response: (key) => (key === null ? null : { bucket: 'b', key }),
    record: async (attempt, next) => {
      records.push({ attempt, next });
    },
    fields: {},
    ...over,
  });
  return { sink, abort, ctx, records, fixed, unit, delivered: () => delivered };
}

test('an event: named, the key stored before the upload, the object written, the success recorded with its event id', async () => {
  const { sink, ctx, records, fixed, unit, delivered } = setup();
  const end = await attemptUnit(ctx, new RecordHolds<number>(), 1, async () => unit());
  assert.equal(end, 'ended');
  assert.deepEqual(fixed, ['k/evt_1.json']);
  assert.deepEqual(
    sink.objects.map((o) => o.key),
    ['k/evt_1.json'],
  );
  assert.equal(records.length, 1);
  assert.equal(records[0]!.attempt.status, 'success');
  assert.equal(records[0]!.attempt.event_id, 'evt_1');
  assert.deepEqual(records[0]!.attempt.response_data, { bucket: 'b', key: 'k/evt_1.json' });
  assert.deepEqual(records[0]!.next, { status: 'success', attempts: 1, next_attempt_at: 0 });
  assert.equal(delivered(), 1);
});

test('a batch: its sealed key is used as it is (nothing named, nothing stored), recorded without an event id', async () => {
  const { sink, ctx, records, fixed, unit, delivered } = setup();
  const end = await attemptUnit(ctx, new RecordHolds<string>(), 'b1', async () =>
    unit({ kind: 'batch', eventId: null, events: 7, key: 'batch-1.ndjson', name: async () => assert.fail('named') }),
  );
  assert.equal(end, 'ended');
  assert.deepEqual(fixed, []);
  assert.deepEqual(
    sink.objects.map((o) => o.key),
    ['batch-1.ndjson'],
  );
  assert.equal(records[0]!.attempt.event_id, null);
  assert.equal(delivered(), 7);
});

test("a sink's failure: recorded with the sink's code, pending for the policy's wait; the last one failed for good", async () => {
  const { sink, ctx, records, unit, delivered } = setup();
  sink.fail = new SinkError('no such bucket', true, 'NoSuchBucket');
  const holds = new RecordHolds<number>();
  assert.equal(await attemptUnit(ctx, holds, 1, async () => unit({ key: 'k' })), 'pending');
  assert.equal(records[0]!.attempt.status, 'failed');
  assert.equal(records[0]!.attempt.code, 'NoSuchBucket');
  assert.equal(records[0]!.next.status, 'pending');
  assert.ok(records[0]!.next.next_attempt_at > Date.now() - 1000);
  assert.equal(await attemptUnit(ctx, holds, 1, async () => unit({ key: 'k', attempt: 4 })), 'ended');
  assert.equal(records[1]!.next.status, 'failed', 'no retry left after max_retries');
  assert.equal(delivered(), 0);
});

test('a key that cannot be made is the attempt failure, with its own code, and nothing is uploaded', async () => {
  const { sink, records, ctx, unit } = setup();
  const policy = (n: number, failure: { error: Error }) =>
    failure.error.message.startsWith('template') ? undefined : n;
  const end = await attemptUnit(ctx, new RecordHolds<number>(), 1, async () =>
    unit({
      policy,
      name: async () => {
        throw new Error('template gives no key');
      },
    }),
  );
  assert.equal(end, 'ended');
  assert.equal(sink.objects.length, 0);
  assert.equal(records[0]!.attempt.code, 'key_template');
  assert.equal(records[0]!.attempt.response_data, null, 'no key: nowhere written');
  assert.equal(records[0]!.next.status, 'failed');
});

test('a failure to store the key or record the attempt holds the unit (pending, not failed), and never rejects', async () => {
  const { ctx, unit } = setup();
  const holds = new RecordHolds<number>();
  const end = await attemptUnit(ctx, holds, 9, async () =>
    unit({
      fix: async () => {
        throw Object.assign(new Error('disk full'), { code: 'SQLITE_FULL' });
      },
    }),
  );
  assert.equal(end, 'pending');
  assert.equal(holds.held(9, Date.now()), true);
  const recordFails = await attemptUnit(ctx, holds, 10, async () =>
    unit({
      record: async () => {
        throw new Error('cannot write');
      },
    }),
  );
  assert.equal(recordFails, 'pending');
  assert.equal(holds.held(10, Date.now()), true);
  // a unit that cannot even be read is held the same way
  assert.equal(
    await attemptUnit(ctx, holds, 11, async () => {
      throw new Error('cannot read');
    }),
    'pending',
  );
  assert.equal(holds.held(11, Date.now()), true);
});

test('stopped or changed while it was named, or stopped during a failed upload: nothing is recorded', async () => {
  const { sink, abort, ctx, records, fixed, unit } = setup();
  assert.equal(
    await attemptUnit(ctx, new RecordHolds<number>(), 1, async () => unit({ wanted: async () => false })),
    'ended',
  );
  assert.deepEqual(fixed, []);
  sink.fail = new Error('connection reset');
  const failing = attemptUnit(ctx, new RecordHolds<number>(), 2, async () =>
    unit({
      key: 'k',
      policy: noRetry,
      encode: async (key) => {
        abort.abort();
        return { key, body: Buffer.alloc(0), contentType: 'application/json', contentMD5: '' };
      },
    }),
  );
  assert.equal(await failing, 'ended');
  assert.equal(records.length, 0);
});
