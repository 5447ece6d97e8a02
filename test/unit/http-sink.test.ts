/**
 * The http / service sink cutting objects into requests: pieces on decision boundaries within the limits,
 * the same bytes every time, a 413 cut in two, a retry resuming after the acknowledged pieces, and a
 * decision refused alone reported (RefusedDecisionsError) instead of blocking the object. The receiver is a
 * node:http server on 127.0.0.1 that enforces its own limits as a decision log service does.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { HttpSink } from '../../src/sinks/http/http-sink.js';
import { cutPieces, decisionsOf, splitByBytes } from '../../src/sinks/http/request-pieces.js';
import { encodeLines } from '../../src/delivery/encode.js';
import { md5, RefusedDecisionsError, SinkError, type StoredObject } from '../../src/sinks/types.js';

const GZIP_ARRAY = { format: 'json_array', compression: 'gzip' } as const;
const PLAIN_NDJSON = { format: 'ndjson', compression: 'none' } as const;

/** Decisions with some text that does not compress (so sizes are predictable), commas and brackets in strings. */
let made = 0;
function lines(n: number, pad = 100): string[] {
  return Array.from({ length: n }, () =>
    JSON.stringify({ decision_id: `d-${made++}`, note: 'a,b],[{"x"}\\n', pad: randomBytes(pad).toString('base64') }),
  );
}

async function objectOf(
  texts: string[],
  encoding: typeof GZIP_ARRAY | typeof PLAIN_NDJSON,
  key = 'out-obj-1',
): Promise<StoredObject> {
  return encodeLines([Buffer.from(texts.map((t) => `${t}\n`).join(''))], encoding, key);
}

interface Received {
  key: string;
  bytes: number;
  ids: string[];
  status: number;
}

/** A receiver that refuses (413) more than `maxDecisions` decisions or `maxBytes` body bytes; `fail(n)` answers 503 to request n. */
async function receiver(
  t: TestContext,
  opts: { maxDecisions?: number; maxBytes?: number; fail?: (nth: number) => boolean },
) {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body).toString('utf8');
      const ids = (
        text.trimStart().startsWith('[')
          ? (JSON.parse(text) as Array<{ decision_id: string }>)
          : text
              .split('\n')
              .filter(Boolean)
              .map((l) => JSON.parse(l) as { decision_id: string })
      ).map((d) => d.decision_id);
      let status = 200;
      if (opts.fail?.(received.length + 1)) status = 503;
      else if (
        (opts.maxDecisions !== undefined && ids.length > opts.maxDecisions) ||
        (opts.maxBytes !== undefined && body.length > opts.maxBytes)
      )
        status = 413;
      received.push({ key: req.headers['idempotency-key'] as string, bytes: body.length, ids, status });
      res
        .writeHead(status, { 'content-type': 'application/json' })
        .end(JSON.stringify({ status, message: status === 413 ? 'too large' : 'ok' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/logs`, received };
}

const signal = new AbortController().signal;
const delivered = (received: Received[]) => received.filter((r) => r.status === 200).flatMap((r) => r.ids);
const idsOf = (texts: string[]) => texts.map((x) => (JSON.parse(x) as { decision_id: string }).decision_id);

test('pieces: every decision once and in order, within the limits, the same bytes on every cut; one decision over the limit goes alone', async () => {
  for (const encoding of [GZIP_ARRAY, PLAIN_NDJSON]) {
    const texts = [...lines(700, 60), ...lines(1, 30_000), ...lines(300, 60)];
    const object = await objectOf(texts, encoding);
    const decoded = (await decisionsOf(object.body, object.contentEncoding))!;
    assert.equal(decoded.format, encoding.format, 'the format told from the bytes');
    assert.equal(decoded.spans.length / 2, texts.length, `${encoding.format}: every decision found`);
    const limits = { maxBytes: 8 * 1024, maxDecisions: 64 };
    const pieces = await cutPieces(decoded, encoding, limits, 0, texts.length - 1);
    const again = await cutPieces(decoded, encoding, limits, 0, texts.length - 1);
    assert.deepEqual(
      again.map((p) => [p.first, p.last, md5(p.body)]),
      pieces.map((p) => [p.first, p.last, md5(p.body)]),
      'deterministic',
    );
    let next = 0;
    for (const p of pieces) {
      assert.equal(p.first, next, 'pieces follow each other');
      next = p.last + 1;
      assert.ok(p.last - p.first + 1 <= limits.maxDecisions, `${p.last - p.first + 1} decisions in a piece`);
      if (p.first !== p.last) assert.ok(p.body.length <= limits.maxBytes, `a piece of ${p.body.length} bytes`);
      const text = (encoding.compression === 'gzip' ? gunzipSync(p.body) : p.body).toString('utf8');
      const got =
        encoding.format === 'json_array'
          ? (JSON.parse(text) as unknown[]).map((d) => JSON.stringify(d))
          : text.split('\n').filter(Boolean);
      assert.deepEqual(got, texts.slice(p.first, p.last + 1), "a piece holds its decisions' exact text");
    }
    assert.equal(next, texts.length);
    const big = pieces.find((p) => p.first === 700);
    assert.ok(
      big && big.last === 700 && big.body.length > limits.maxBytes,
      'the decision over the limit is a piece of its own',
    );
  }
});

test('splitByBytes: never an empty range, whatever the sizes', () => {
  const spans = [0, 1, 2, 1000, 1001, 1002, 1003, 1004];
  for (let parts = 2; parts <= 4; parts++) {
    const ranges = splitByBytes(spans, 0, 3, parts);
    assert.equal(ranges.length, parts);
    assert.deepEqual(
      ranges.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i)),
      [0, 1, 2, 3],
    );
  }
});

test('an object within the limits goes whole, with its key; a larger one in pieces of <key>#<first>-<last>', async (t) => {
  const r = await receiver(t, {});
  const sink = new HttpSink({
    url: r.url,
    headers: {},
    timeout: 5000,
    limits: { maxBytes: 1 << 20, maxDecisions: 100 },
  });
  const small = await objectOf(lines(100), GZIP_ARRAY, 'small');
  await sink.put(small, signal);
  assert.deepEqual(
    r.received.map((x) => [x.key, x.bytes]),
    [['small', small.body.length]],
    'sent as it is',
  );
  const texts = lines(250);
  await sink.put(await objectOf(texts, GZIP_ARRAY, 'large'), signal);
  assert.deepEqual(
    r.received.slice(1).map((x) => x.key),
    ['large#0-82', 'large#83-166', 'large#167-249'],
  );
  assert.deepEqual(delivered(r.received).slice(100), idsOf(texts));
});

test('a 413 cuts the request in two until the receiver takes it; a retry resumes after the acknowledged pieces', async (t) => {
  // the receiver takes 40 decisions at most and fails its 3rd and 4th requests
  const r = await receiver(t, { maxDecisions: 40, fail: (n) => n === 4 || n === 5 });
  const sink = new HttpSink({ url: r.url, headers: {}, timeout: 5000, limits: {} });
  const texts = lines(200);
  const object = await objectOf(texts, PLAIN_NDJSON, 'obj');
  const errors: SinkError[] = [];
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      await sink.put(object, signal);
      break;
    } catch (err) {
      assert.ok(err instanceof SinkError && !err.permanent, `only the 503s fail a try: ${String(err)}`);
      errors.push(err);
    }
  }
  assert.equal(errors.length, 2, 'two tries failed (the 503s)');
  assert.deepEqual(delivered(r.received), idsOf(texts), 'each decision acknowledged once, in order');
  const acknowledged = r.received.filter((x) => x.status === 200).map((x) => x.key);
  assert.equal(new Set(acknowledged).size, acknowledged.length, 'no acknowledged piece sent again');
  assert.equal(r.received[0]!.key, 'obj', 'the whole object first');
  for (const failed of r.received.filter((x) => x.status === 503)) {
    assert.ok(
      r.received.some((x) => x.status === 200 && x.key === failed.key && x.bytes === failed.bytes),
      `${failed.key} re-sent with the same key and bytes`,
    );
  }
  assert.ok(r.received.every((x) => x.status !== 413 || x.ids.length > 40));
});

test('a retry after the caller used the body memory again sends the bytes of the object put, not the old memory', async (t) => {
  // the first request fails; the output then gives the body's memory back (releaseBody), another body is
  // written into it, and the retry encodes the same decisions again: the receiver must get them
  const r = await receiver(t, { fail: (n) => n === 1 });
  const sink = new HttpSink({ url: r.url, headers: {}, timeout: 5000, limits: {} });
  const texts = lines(50);
  const first = await objectOf(texts, PLAIN_NDJSON, 'obj');
  const original = Buffer.from(first.body);
  await assert.rejects(sink.put(first, signal), SinkError);
  const other = texts.map((x) =>
    x.replace(/"decision_id":"([^"]*)"/, (_m, id: string) => `"decision_id":"${id.replace(/./g, 'x')}"`),
  );
  first.body.set(Buffer.from(other.map((x) => `${x}\n`).join('')));
  await sink.put({ ...first, body: original }, signal);
  assert.deepEqual(delivered(r.received), idsOf(texts), 'the decisions of the object put, as put');
});

test('a decision refused alone: every other decision is delivered, then RefusedDecisionsError names it; a retry re-sends only it', async (t) => {
  const r = await receiver(t, { maxBytes: 16 * 1024 });
  const sink = new HttpSink({
    url: r.url,
    headers: {},
    timeout: 5000,
    limits: { maxBytes: 1 << 20, maxDecisions: 1000 },
  });
  const texts = [...lines(50), ...lines(1, 40_000), ...lines(50)];
  const object = await objectOf(texts, GZIP_ARRAY, 'obj');
  let refused: RefusedDecisionsError | undefined;
  try {
    await sink.put(object, signal);
  } catch (err) {
    refused = err as RefusedDecisionsError;
  }
  assert.ok(refused instanceof RefusedDecisionsError, `put throws RefusedDecisionsError: ${String(refused)}`);
  assert.ok(refused.permanent);
  assert.equal(refused.delivered, 100);
  assert.deepEqual(
    refused.refused.map((x) => [x.index, x.decision]),
    [[50, texts[50]]],
  );
  assert.match(refused.refused[0]!.error, /413/);
  const ids = idsOf(texts);
  assert.deepEqual(
    delivered(r.received).sort(),
    ids.filter((_, i) => i !== 50).sort(),
    'every other decision delivered once',
  );
  const before = r.received.length;
  await assert.rejects(sink.put(object, signal), RefusedDecisionsError);
  assert.deepEqual(
    r.received.slice(before).map((x) => x.ids),
    [[ids[50]]],
    'the retry sends only the refused decision',
  );
});
