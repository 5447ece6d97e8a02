/**
 * Decisions as Parquet (src/formats/parquet-decisions.ts), read back with DuckDB as a user would: every row
 * lands, `timestamp` is a TIMESTAMP, a decision is found by its decision_id, the JSON columns hold the text
 * that was sent (big integers included), a value that does not fit its typed column is kept in `extra`, and
 * the same decisions always encode to the same bytes.
 */
import { rfc3339Nano } from '../../src/formats/rfc3339.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import fc from 'fast-check';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import {
  DECISION_COLUMNS,
  decisionParquetWriter,
  encodeDecisionsParquet,
} from '../../src/formats/parquet-decisions.js';
import { decisionRow } from '../../src/formats/decision-row.js';
import type { ParquetCompression } from '../../src/formats/parquet-options.js';
import { benchDecision } from '../../bench/payloads.js';
import { duckdb, parquetFile, type DuckDb } from '../helpers/duckdb.js';
import { tempDir } from '../helpers/sluice.js';

const COMPRESSIONS: ParquetCompression[] = ['zstd', 'snappy', 'gzip', 'none'];
const ndjson = (texts: string[]) => Buffer.from(texts.map((t) => `${t}\n`).join(''));

async function setup(t: { after: (fn: () => void) => void }): Promise<{ dir: string; db: DuckDb }> {
  const dir = tempDir('sluice-parquet-');
  const db = await duckdb();
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, db };
}

/** Decisions whose JSON a JS round trip would change: numbers past 2^53, out of double range, -0.0, integer-like keys after others. */
const BIG_NUMBER_DECISIONS = [
  '{"decision_id":"big-1","path":"envoy/authz/allow","timestamp":"2026-12-01T10:00:00.5Z","input":{"account":12345678901234567890123,"ratio":1.0E+400,"zero":-0.0,"keys":{"b":1,"2":2}},"result":[9007199254740993,1.50]}',
  '{"decision_id":"big-2","path":"p","timestamp":"2026-12-01T10:00:01Z","input":  { "spaced" : [ 1 , 2 ] }  ,"result":{"allow":true,"limit":18446744073709551616}}',
];

test('a batch of bench decisions reads back in DuckDB: rows, row groups, TIMESTAMP, lookup by decision_id, exact JSON text', async (t) => {
  const { dir, db } = await setup(t);
  const now = new Date('2026-12-01T10:00:00Z');
  const texts = [
    ...Array.from({ length: 2000 }, (_, i) => JSON.stringify(benchDecision(`bench-${i}`, i, now))),
    ...BIG_NUMBER_DECISIONS,
  ];
  // several NDJSON groups, as the decision buffer yields them; row groups of ~256 KiB, so several
  const groups = [ndjson(texts.slice(0, 700)), ndjson(texts.slice(700, 1500)), ndjson(texts.slice(1500))];
  const { body, count } = await encodeDecisionsParquet(groups, { compression: 'zstd', rowGroupBytes: 256 * 1024 });
  assert.equal(count, texts.length);
  const file = parquetFile(dir, 'decisions.parquet', body);

  const [{ n }] = (await db.all(`SELECT count(*) AS n FROM ${file}`)) as [{ n: bigint }];
  assert.equal(n, BigInt(texts.length));
  const groupsIn = await db.all(`SELECT DISTINCT row_group_id FROM parquet_metadata(${file})`);
  assert.ok(groupsIn.length >= 5, `${groupsIn.length} row groups`);

  const types = await db.all(
    `SELECT typeof(timestamp) AS ts, typeof(input) AS input, typeof(labels) AS labels, typeof(req_id) AS req_id, typeof(erased) AS erased FROM ${file} LIMIT 1`,
  );
  assert.deepEqual(types, [
    {
      ts: 'TIMESTAMP WITH TIME ZONE',
      input: 'JSON',
      labels: 'MAP(VARCHAR, VARCHAR)',
      req_id: 'BIGINT',
      erased: 'VARCHAR[]',
    },
  ]);
  const [tsSchema] = await db.all(`SELECT logical_type FROM parquet_schema(${file}) WHERE name = 'timestamp'`);
  assert.match(String(tsSchema!.logical_type), /isAdjustedToUTC=1.*MICROS=MicroSeconds/);

  // a lookup by decision_id gives the decision back
  const sent = benchDecision('bench-777', 777, now);
  const [found] =
    await db.all(`SELECT path, requested_by, req_id, labels['id'] AS instance, epoch_us(timestamp) AS micros, input::VARCHAR AS input, result::VARCHAR AS result
    FROM ${file} WHERE decision_id = 'bench-777'`);
  const ts = sent.timestamp as string;
  assert.deepEqual(found, {
    path: sent.path,
    requested_by: sent.requested_by,
    req_id: 777n,
    instance: (sent.labels as { id: string }).id,
    micros: BigInt(Date.parse(`${ts.slice(0, 23)}Z`)) * 1000n + BigInt(ts.slice(23, 26)),
    input: JSON.stringify(sent.input),
    result: JSON.stringify(sent.result),
  });

  // every row's input and result are the text that was sent
  const rows = await db.all(`SELECT decision_id, input::VARCHAR AS input, result::VARCHAR AS result FROM ${file}`);
  const byId = new Map(rows.map((r) => [r.decision_id, r]));
  for (let i = 0; i < 2000; i++) {
    const d = benchDecision(`bench-${i}`, i, now);
    assert.deepEqual(byId.get(`bench-${i}`), {
      decision_id: `bench-${i}`,
      input: JSON.stringify(d.input),
      result: JSON.stringify(d.result),
    });
  }
  const big =
    await db.all(`SELECT input::VARCHAR AS input, result::VARCHAR AS result, json_extract_string(input, '$.account') AS account
    FROM ${file} WHERE decision_id LIKE 'big-%' ORDER BY decision_id`);
  assert.deepEqual(big, [
    {
      input: '{"account":12345678901234567890123,"ratio":1.0E+400,"zero":-0.0,"keys":{"b":1,"2":2}}',
      result: '[9007199254740993,1.50]',
      account: '12345678901234567890123',
    },
    { input: '{ "spaced" : [ 1 , 2 ] }', result: '{"allow":true,"limit":18446744073709551616}', account: null },
  ]);
});

test('a value that does not fit its typed column lands in extra, as sent, and the column is null', async (t) => {
  const { dir, db } = await setup(t);
  const cases: Array<{ text: string; columns: Record<string, unknown>; extra: string | null }> = [
    {
      text: '{"decision_id":"t1","timestamp":"yesterday"}',
      columns: { timestamp: null },
      extra: '{"timestamp":"yesterday"}',
    },
    {
      text: '{"decision_id":"t2","timestamp":"2026-02-30T00:00:00Z"}',
      columns: { timestamp: null },
      extra: '{"timestamp":"2026-02-30T00:00:00Z"}',
    },
    {
      text: '{"decision_id":"t3","timestamp":"2026-12-01 10:00:00"}',
      columns: { timestamp: null },
      extra: '{"timestamp":"2026-12-01 10:00:00"}',
    },
    {
      text: '{"decision_id":"t4","timestamp":1764583200}',
      columns: { timestamp: null },
      extra: '{"timestamp":1764583200}',
    },
    {
      // the column keeps the instant; the text it cannot give back (nanoseconds, an offset) is kept in extra too
      text: '{"decision_id":"t5","timestamp":"2026-12-01T12:00:00.1234567+02:00"}',
      columns: { micros: 1796119200123456n },
      extra: '{"timestamp":"2026-12-01T12:00:00.1234567+02:00"}',
    },
    { text: '{"decision_id":"r1","req_id":1.5}', columns: { req_id: null }, extra: '{"req_id":1.5}' },
    { text: '{"decision_id":"r2","req_id":"12"}', columns: { req_id: null }, extra: '{"req_id":"12"}' },
    {
      text: '{"decision_id":"r3","req_id":18446744073709551615}',
      columns: { req_id: null },
      extra: '{"req_id":18446744073709551615}',
    },
    { text: '{"decision_id":"r4","req_id":1e3}', columns: { req_id: null }, extra: '{"req_id":1e3}' },
    {
      text: '{"decision_id":"r5","req_id":-9223372036854775808}',
      columns: { req_id: -9223372036854775808n },
      extra: null,
    },
    {
      text: '{"decision_id":"l1","labels":{"id":"a","n":3}}',
      columns: { labels: null },
      extra: '{"labels":{"id":"a","n":3}}',
    },
    {
      text: '{"decision_id":"l2","labels":{"id":"a","id":"b"}}',
      columns: { labels: null },
      extra: '{"labels":{"id":"a","id":"b"}}',
    },
    {
      text: '{"decision_id":"e1","erased":["/input/a",1],"masked":"/input/b"}',
      columns: { erased: null, masked: null },
      extra: '{"erased":["/input/a",1],"masked":"/input/b"}',
    },
    {
      text: '{"decision_id":"s1","path":["a"],"requested_by":null,"custom":{"tenant":"acme","n":12345678901234567890}}',
      columns: { path: null, requested_by: null },
      extra: '{"path":["a"],"requested_by":null,"custom":{"tenant":"acme","n":12345678901234567890}}',
    },
    // a lone surrogate becomes U+FFFD (DuckDB refuses a JSON column that escapes one); a pair stays as sent
    {
      text: '{"decision_id":"s2","revision":"a\\ud800","input":["\\udc00\\ud83d\\ude00\\\\ud800"],"\\ud800":1}',
      columns: { revision: 'a\ufffd', input: '["\\ufffd\\ud83d\\ude00\\\\ud800"]' },
      extra: '{"\\ufffd":1}',
    },
    // the last of duplicate members is the decision's value (as JSON.parse reads it)
    { text: '{"decision_id":"d1","path":"a","path":"b","x":1,"x":2}', columns: { path: 'b' }, extra: '{"x":1,"x":2}' },
    { text: '{"decision_id":"d2","input":{"a":1},"input":null}', columns: { input: 'null' }, extra: null },
  ];
  const body = (
    await encodeDecisionsParquet([ndjson([...cases.map((c) => c.text), '[1, 2]', '"just a string"'])], {
      compression: 'snappy',
    })
  ).body;
  const file = parquetFile(dir, 'odd.parquet', body);
  const rows =
    await db.all(`SELECT decision_id, path, timestamp IS NULL AS no_ts, epoch_us(timestamp) AS micros, labels IS NULL AS no_labels, requested_by, req_id, revision,
    input::VARCHAR AS input, erased, masked, extra::VARCHAR AS extra FROM read_parquet(${file}, file_row_number = true) ORDER BY file_row_number`);
  assert.equal(rows.length, cases.length + 2);
  cases.forEach((c, i) => {
    const row = rows[i]!;
    assert.equal(row.extra, c.extra, c.text);
    for (const [column, value] of Object.entries(c.columns)) {
      if (column === 'timestamp') assert.equal(row.no_ts, value === null, c.text);
      else if (column === 'labels') assert.equal(row.no_labels, value === null, c.text);
      else assert.deepEqual(row[column], value, `${column} of ${c.text}`);
    }
  });
  // a decision that is not an object at all is all extra
  assert.deepEqual(
    rows.slice(-2).map((r) => [r.decision_id, r.extra]),
    [
      [null, '[1, 2]'],
      [null, '"just a string"'],
    ],
  );
});

test('a line that is not JSON is reported and left out, or throws when nobody listens', async () => {
  const lines = ndjson(['{"decision_id":"a"}', '{"decision_id":', '{"decision_id":"b"}']);
  const refused: string[] = [];
  const { count } = await encodeDecisionsParquet([lines], {
    compression: 'none',
    onUnprocessable: (line) => refused.push(line),
  });
  assert.equal(count, 2);
  assert.deepEqual(refused, ['{"decision_id":']);
  await assert.rejects(encodeDecisionsParquet([lines], { compression: 'none' }), SyntaxError);
});

test('every compression reads back, and the same decisions always give the same bytes', async (t) => {
  const { dir, db } = await setup(t);
  const now = new Date('2026-12-01T10:00:00Z');
  const texts = Array.from({ length: 600 }, (_, i) => JSON.stringify(benchDecision(`det-${i}`, i, now)));
  for (const compression of COMPRESSIONS) {
    const options = { compression, rowGroupBytes: 64 * 1024 };
    const once = (await encodeDecisionsParquet([ndjson(texts)], options)).body;
    const again = (await encodeDecisionsParquet([ndjson(texts)], options)).body;
    assert.ok(once.equals(again), `${compression}: two encodings differ`);
    // added decision by decision, and written into memory given for it (large enough, then too small):
    // still the same file
    for (const into of [new ArrayBuffer(once.length + 100), new ArrayBuffer(1000)]) {
      const writer = await decisionParquetWriter({ ...options, into });
      for (const text of texts) writer.add(Buffer.from(text));
      const file = writer.finish();
      assert.ok(file.equals(once), `${compression}: encoding decision by decision differs`);
      assert.equal(file.buffer === into, into.byteLength > once.length, 'written in the memory given when it fits');
    }

    const file = parquetFile(dir, `${compression}.parquet`, once);
    const codecs = await db.all(`SELECT DISTINCT compression FROM parquet_metadata(${file})`);
    assert.deepEqual(codecs, [{ compression: compression === 'none' ? 'UNCOMPRESSED' : compression.toUpperCase() }]);
    const [{ n }] = (await db.all(`SELECT count(DISTINCT decision_id) AS n FROM ${file}`)) as [{ n: bigint }];
    assert.equal(n, 600n);
    const [meta] = await db.all(`SELECT created_by FROM parquet_file_metadata(${file})`);
    assert.equal(meta!.created_by, 'sluice');
  }
});

test('no decisions make a valid empty file', async (t) => {
  const { dir, db } = await setup(t);
  const { body, count } = await encodeDecisionsParquet([], { compression: 'zstd' });
  assert.equal(count, 0);
  const file = parquetFile(dir, 'empty.parquet', body);
  assert.deepEqual(await db.all(`SELECT count(*) AS n FROM ${file}`), [{ n: 0n }]);
});

// ---------------------------------------------------------------------------------------------------------
// Property: whatever a decision holds, each member is in its typed column or, as sent, in extra

const TYPED = [
  'decision_id',
  'path',
  'timestamp',
  'labels',
  'requested_by',
  'req_id',
  'revision',
  'bundles',
  'input',
  'result',
  'metrics',
  'nd_builtin_cache',
  'erased',
  'masked',
];
const JSON_MEMBERS = new Set(['bundles', 'input', 'result', 'metrics', 'nd_builtin_cache']);
const LONE_SURROGATE = /\p{Surrogate}/gu;

/** A member value and its JSON text (a bigint is written as its digits, which JSON.stringify cannot do). */
type Member = { value: unknown; text: string };
const member = (value: unknown): Member => ({
  value,
  text: typeof value === 'bigint' ? String(value) : JSON.stringify(value),
});

const str = fc.oneof(
  fc.string(),
  fc.string({ unit: fc.constantFrom('a', 'é', '"', '\\', '\n', '\u0000', '\u2028', '😀', '\ud800', '\udc00') }),
);
const json = fc.jsonValue({ maxDepth: 3 });
class ValidTimestamp {
  constructor(
    readonly text: string,
    readonly micros: bigint,
  ) {}
}
const validTimestamp = fc
  .record({
    date: fc.date({
      min: new Date('1900-01-01T00:00:00Z'),
      max: new Date('2200-01-01T00:00:00Z'),
      noInvalidDate: true,
    }),
    extraDigits: fc.stringMatching(/^\d{0,6}$/),
    offsetMinutes: fc.integer({ min: -23 * 60 - 59, max: 23 * 60 + 59 }),
  })
  .map(({ date, extraDigits, offsetMinutes }) => {
    // the instant written in the given offset: local time = UTC + offset
    const local = new Date(date.getTime() + offsetMinutes * 60_000).toISOString().slice(0, 23);
    const sign = offsetMinutes < 0 ? '-' : '+';
    const abs = Math.abs(offsetMinutes);
    const zone =
      offsetMinutes === 0
        ? 'Z'
        : `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
    const micros = BigInt(date.getTime()) * 1000n + BigInt(extraDigits.slice(0, 3).padEnd(3, '0'));
    return new ValidTimestamp(`${local}${extraDigits}${zone}`, micros);
  });
const decisionArb = fc.record(
  {
    decision_id: fc.oneof(str, json),
    path: fc.oneof(str, json),
    timestamp: fc.oneof(
      validTimestamp,
      fc.oneof(
        fc.constantFrom(
          '2026-13-01T00:00:00Z',
          '2026-12-01T24:00:00Z',
          '2026-12-01T10:00:60Z',
          '2026-12-01T10:00:00',
          'now',
        ),
        json,
      ),
    ),
    labels: fc.oneof(fc.dictionary(str, str), fc.dictionary(str, json), json),
    requested_by: fc.oneof(str, json),
    req_id: fc.oneof(
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      fc.bigInt({ min: 2n ** 63n, max: 2n ** 70n }),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      json,
    ),
    revision: fc.oneof(str, json),
    bundles: json,
    input: json,
    result: json,
    metrics: json,
    nd_builtin_cache: json,
    erased: fc.oneof(fc.array(str, { maxLength: 4 }), json),
    masked: fc.oneof(fc.array(str, { maxLength: 4 }), json),
  },
  { requiredKeys: [] },
);
const others = fc.uniqueArray(
  fc.tuple(
    str.filter((k) => !TYPED.includes(k)),
    json,
  ),
  { maxLength: 3, selector: ([k]) => k },
);

interface Generated {
  text: string;
  members: Array<[string, Member]>;
  micros?: bigint;
}

// whitespace between members and around colons (never a line break: ingest makes those spaces), which extra
// does not keep: it is written compact
const separator = fc.constantFrom(',', ',', ', ', ' ,\t ');
const colon = fc.constantFrom(':', ':', ' : ');
const generated = fc.tuple(decisionArb, others, separator, colon).map(([typed, rest, sep, col]): Generated => {
  let micros: bigint | undefined;
  const members: Array<[string, Member]> = Object.entries(typed).map(([k, v]) => {
    if (v instanceof ValidTimestamp) {
      micros = v.micros;
      return [k, member(v.text)];
    }
    return [k, member(v)];
  });
  members.push(...rest.map(([k, v]): [string, Member] => [k, member(v)]));
  return { text: `{${members.map(([k, m]) => `${JSON.stringify(k)}${col}${m.text}`).join(sep)}}`, members, micros };
});

const goodString = (v: unknown): v is string => typeof v === 'string';
/** JSON.stringify escapes exactly the lone surrogates (a pair it writes as the character): each becomes \ufffd. */
const wellFormedText = (text: string) => text.replace(/\\ud[89a-f][0-9a-f]{2}/g, '\\ufffd');
const wellFormedString = (s: string) => s.replace(LONE_SURROGATE, '\ufffd');

/** What each typed column should hold, and what extra should be, worked out from the generated values. */
function expected(d: Generated): { columns: Record<string, unknown>; extra: string | null } {
  const columns: Record<string, unknown> = Object.fromEntries(TYPED.map((k) => [k, null]));
  const extra: string[] = [];
  for (const [k, { value, text }] of d.members) {
    let fits = true;
    if (['decision_id', 'path', 'requested_by', 'revision'].includes(k))
      fits = goodString(value) && ((columns[k] = wellFormedString(value)), true);
    else if (JSON_MEMBERS.has(k)) columns[k] = wellFormedText(text);
    else if (k === 'timestamp') fits = d.micros !== undefined && ((columns[k] = d.micros), true);
    else if (k === 'req_id') {
      const n = /^-?\d+$/.test(text) ? BigInt(text) : undefined;
      fits = n !== undefined && n >= -(2n ** 63n) && n < 2n ** 63n && ((columns[k] = n), true);
    } else if (k === 'labels') {
      const entries =
        value !== null && typeof value === 'object' && !Array.isArray(value) ? Object.entries(value) : undefined;
      // two keys that differ only in their lone surrogates are the same key once each is U+FFFD: not a map
      const keys = new Set(entries?.map(([lk]) => wellFormedString(lk)));
      fits =
        entries !== undefined &&
        entries.every(([, lv]) => goodString(lv)) &&
        keys.size === entries.length &&
        ((columns[k] = entries.map(([lk, lv]) => [wellFormedString(lk), wellFormedString(lv as string)])), true);
    } else if (k === 'erased' || k === 'masked') {
      fits = Array.isArray(value) && value.every(goodString) && ((columns[k] = value.map(wellFormedString)), true);
    } else fits = false;
    // a timestamp whose column does not give its text back is kept as sent besides
    const alsoKept = k === 'timestamp' && fits && text !== `"${rfc3339Nano(d.micros!)}"`;
    if (!fits || alsoKept) extra.push(`${wellFormedText(JSON.stringify(k))}:${wellFormedText(text)}`);
  }
  return { columns, extra: extra.length === 0 ? null : `{${extra.join(',')}}` };
}

test('property: every member of any decision is in its typed column or, as sent, in extra', async (t) => {
  const { dir, db } = await setup(t);
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(generated, { minLength: 1, maxLength: 25 }),
      fc.constantFrom(...COMPRESSIONS),
      fc.integer({ min: 1, max: 4000 }),
      async (decisions, compression, rowGroupBytes) => {
        const { body } = await encodeDecisionsParquet([ndjson(decisions.map((d) => d.text))], {
          compression,
          rowGroupBytes,
        });
        const file = parquetFile(dir, `property-${run++}.parquet`, body);
        const rows =
          await db.all(`SELECT decision_id, path, epoch_us(timestamp) AS timestamp, map_keys(labels) AS label_keys, map_values(labels) AS label_values,
        requested_by, req_id, revision, bundles::VARCHAR AS bundles, input::VARCHAR AS input, result::VARCHAR AS result, metrics::VARCHAR AS metrics,
        nd_builtin_cache::VARCHAR AS nd_builtin_cache, erased, masked, extra::VARCHAR AS extra
        FROM read_parquet(${file}, file_row_number = true) ORDER BY file_row_number`);
        assert.equal(rows.length, decisions.length);
        decisions.forEach((d, i) => {
          const { columns, extra } = expected(d);
          const row = rows[i]!;
          const { label_keys, label_values, ...rest } = row;
          const labels =
            label_keys === null ? null : (label_keys as string[]).map((k, j) => [k, (label_values as string[])[j]]);
          assert.deepEqual({ ...rest, labels }, { ...columns, extra }, d.text);
        });
      },
    ),
    { numRuns: 40 },
  );
});

/**
 * The file hyparquet-writer writes when it is given the rows' values as strings, in one row group: what
 * ParquetTableWriter, which gives it views of the values' UTF-8 in its TextArena, must write byte for byte.
 */
function fileFromStrings(texts: string[]): Buffer {
  const writer = new ByteWriter();
  const parquet = new ParquetWriter({
    writer,
    schema: [{ name: 'root', num_children: DECISION_COLUMNS.length }, ...DECISION_COLUMNS.flatMap((c) => c.schema)],
    codec: 'UNCOMPRESSED',
    createdBy: 'sluice',
  });
  const rows = texts.map(decisionRow);
  void parquet.write({
    columnData: DECISION_COLUMNS.map((c) => ({
      name: c.schema[0]!.name,
      data: rows.map(c.value),
      statistics: c.statistics ?? true,
    })) as never,
    rowGroupSize: rows.length,
  });
  parquet.schema = parquet.schema.map((e) => (e.logical_type?.type === 'JSON' ? { ...e, converted_type: 'JSON' } : e));
  void parquet.finish();
  return Buffer.from(writer.buffer, 0, writer.index);
}

test('property: a file holds the bytes hyparquet-writer writes from the decisions as strings', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(generated, { minLength: 1, maxLength: 25 }), async (decisions) => {
      const texts = decisions.map((d) => d.text);
      const { body } = await encodeDecisionsParquet([ndjson(texts)], { compression: 'none', rowGroupBytes: 1 << 30 });
      assert.ok(body.equals(fileFromStrings(texts)), texts.join('\n'));
    }),
    { numRuns: 60 },
  );
});

test("each row group's min/max statistics are of its own decisions, though the writer uses its text memory again", async (t) => {
  const { dir, db } = await setup(t);
  const now = new Date('2026-12-01T10:00:00Z');
  const texts = Array.from({ length: 1200 }, (_, i) =>
    JSON.stringify(benchDecision(`${(i * 7919) % 1200}-id`, i, now)),
  );
  const { body } = await encodeDecisionsParquet([ndjson(texts)], { compression: 'zstd', rowGroupBytes: 64 * 1024 });
  const file = parquetFile(dir, 'statistics.parquet', body);
  const groups = await db.all(
    `SELECT row_group_id, row_group_num_rows AS n, stats_min_value AS min, stats_max_value AS max
     FROM parquet_metadata(${file}) WHERE path_in_schema = 'decision_id' ORDER BY row_group_id`,
  );
  assert.ok(groups.length >= 8, `${groups.length} row groups`);
  const ids = texts.map((text) => (JSON.parse(text) as { decision_id: string }).decision_id);
  const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  let first = 0;
  for (const g of groups) {
    const own = ids.slice(first, first + Number(g.n)).sort(byBytes);
    first += Number(g.n);
    assert.deepEqual([g.min, g.max], [own[0], own.at(-1)], `row group ${String(g.row_group_id)}`);
  }
  assert.equal(first, ids.length);
});
