/**
 * Parquet writers compared on the benchmark's decisions (bench/payloads.ts), for issue 16's choice of library.
 * Results and the reasoning: docs/parquet-writers.md.
 *
 *   mkdir -p /tmp/pq && cd /tmp/pq && npm init -y && npm install parquet-wasm apache-arrow hyparquet-writer \
 *     @bokuweb/zstd-wasm @hpcc-js/wasm-zstd @dsnp/parquetjs @duckdb/node-api
 *   node --import tsx bench/parquet-writers.ts --modules /tmp/pq/node_modules [--decisions 20000] [--out /tmp/pq-out] [--only NAME]
 *   node --expose-gc --import tsx bench/parquet-writers.ts --memory 64 [--row-group-mib 8]   (see memory() below)
 *
 * The candidates come from a scratch folder (--modules), not from the project's dependencies, so that
 * measuring four libraries installs none of them into the project. Each (writer, compression) runs in a
 * child process of its own, so its peak RSS is its own: the table shows the peak minus the peak of a child
 * that does everything but encode (the same decisions made and split into rows). Every writer gets the same
 * rows (src/formats/decision-row.ts: the exact JSON text of input/result/..., timestamps in microseconds) and
 * the same schema, and writes row groups of 10,000 decisions. Each child encodes twice (the second run is timed) and
 * compares the bytes (determinism); the parent then reads every file back with DuckDB (row count, JSON text of `input` equal
 * to the sent text, the column types) when @duckdb/node-api is among the modules.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { decisionRow, type DecisionRow } from '../src/formats/decision-row.js';
import { encodeDecisionsParquet } from '../src/formats/parquet-decisions.js';
import { benchDecision } from './payloads.js';

type Compression = 'zstd' | 'snappy' | 'gzip' | 'none';
type Encoder = (rows: DecisionRow[], compression: Compression, file: string, texts: string[]) => Promise<Uint8Array>;

const ROWS_PER_GROUP = 10_000;
const COMPRESSIONS: Compression[] = ['zstd', 'snappy', 'gzip', 'none'];

const args = process.argv.slice(2);
const arg = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : args[i + 1]!;
};
const modules = path.resolve(arg('modules', 'node_modules'));
const decisions = Number(arg('decisions', '20000'));
const outDir = path.resolve(arg('out', '/tmp/parquet-writers-bench'));
const requireFrom = createRequire(path.join(modules, 'package.json'));
const load = async <T>(name: string): Promise<T> => (await import(pathToFileURL(requireFrom.resolve(name)).href)) as T;

/** The decisions as the store holds them: one JSON text each (made outside every measurement). */
function decisionTexts(n: number): string[] {
  const now = new Date('2026-12-01T10:00:00Z');
  return Array.from({ length: n }, (_, i) => JSON.stringify(benchDecision(`bench-${i}`, i, now)));
}

const JSON_COLUMNS = ['bundles', 'input', 'result', 'metrics', 'nd_builtin_cache', 'extra'] as const;
const STRING_COLUMNS = ['decision_id', 'path', 'requested_by', 'revision'] as const;

// ---------------------------------------------------------------------------------------------------------
// The candidates

interface Zstd {
  compress(b: Uint8Array, level?: number): Uint8Array;
}
const zstdOf: Record<string, () => Promise<Zstd>> = {
  '@bokuweb/zstd-wasm': async () => {
    const z = await load<{ default?: Zstd & { init(): Promise<void> } } & Zstd & { init(): Promise<void> }>(
      '@bokuweb/zstd-wasm',
    );
    const zstd = z.default ?? z;
    await zstd.init();
    return zstd;
  },
  '@hpcc-js/wasm-zstd': async () => (await load<{ Zstd: { load(): Promise<Zstd> } }>('@hpcc-js/wasm-zstd')).Zstd.load(),
};

/** hyparquet-writer 0.17 (pure JS) with zstd from a WebAssembly build of libzstd and gzip from node:zlib. */
const hyparquet =
  (zstdPackage: string): Encoder =>
  async (rows, compression) => {
    const { ParquetWriter, ByteWriter } = await load<typeof import('hyparquet-writer')>('hyparquet-writer');
    const zstd = await zstdOf[zstdPackage]!();
    const str = (name: string, required = false) => ({
      name,
      type: 'BYTE_ARRAY',
      repetition_type: required ? 'REQUIRED' : 'OPTIONAL',
      converted_type: 'UTF8',
      logical_type: { type: 'STRING' },
    });
    const json = (name: string) => ({
      name,
      type: 'BYTE_ARRAY',
      repetition_type: 'OPTIONAL',
      logical_type: { type: 'JSON' },
    });
    const list = (name: string) => [
      { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      str('element', true),
    ];
    const schema = [
      { name: 'root', num_children: 15 },
      str('decision_id'),
      str('path'),
      {
        name: 'timestamp',
        type: 'INT64',
        repetition_type: 'OPTIONAL',
        converted_type: 'TIMESTAMP_MICROS',
        logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' },
      },
      {
        name: 'labels',
        repetition_type: 'OPTIONAL',
        converted_type: 'MAP',
        logical_type: { type: 'MAP' },
        num_children: 1,
      },
      { name: 'key_value', repetition_type: 'REPEATED', num_children: 2 },
      str('key', true),
      str('value'),
      str('requested_by'),
      { name: 'req_id', type: 'INT64', repetition_type: 'OPTIONAL' },
      str('revision'),
      json('bundles'),
      json('input'),
      json('result'),
      json('metrics'),
      json('nd_builtin_cache'),
      ...list('erased'),
      ...list('masked'),
      json('extra'),
    ];
    const writer = new ByteWriter();
    const codec = ({ zstd: 'ZSTD', snappy: 'SNAPPY', gzip: 'GZIP', none: 'UNCOMPRESSED' } as const)[compression];
    const pq = new ParquetWriter({
      writer,
      schema: schema as never,
      codec,
      createdBy: 'bench',
      compressors: { ZSTD: (b: Uint8Array) => zstd.compress(b, 3), GZIP: (b: Uint8Array) => gzipSync(b) },
    });
    const col = <K extends keyof DecisionRow>(name: K) => rows.map((r) => r[name]);
    pq.write({
      columnData: [
        ...STRING_COLUMNS.slice(0, 2).map((name) => ({ name, data: col(name) })),
        { name: 'timestamp', data: col('timestamp') },
        { name: 'labels', data: col('labels') },
        { name: 'requested_by', data: col('requested_by') },
        { name: 'req_id', data: col('req_id') },
        { name: 'revision', data: col('revision') },
        ...JSON_COLUMNS.slice(0, 5).map((name) => ({ name, data: col(name), statistics: false })),
        { name: 'erased', data: col('erased') },
        { name: 'masked', data: col('masked') },
        { name: 'extra', data: col('extra'), statistics: false },
      ] as never,
      rowGroupSize: ROWS_PER_GROUP,
    });
    // hyparquet-writer JSON.stringify()s the values of a column whose converted_type is JSON; the footer gets
    // that annotation (DuckDB reads a JSON column without it as BLOB) only after the exact texts are written
    pq.schema = schema.map((e) => (e.logical_type?.type === 'JSON' ? { ...e, converted_type: 'JSON' } : e)) as never;
    pq.finish();
    return writer.getBytes();
  };

/** parquet-wasm 0.8 (arrow-rs compiled to WebAssembly) fed an apache-arrow 21 table through Arrow IPC. */
const parquetWasm: Encoder = async (rows, compression) => {
  const arrow = await load<typeof import('apache-arrow')>('apache-arrow');
  const pw = await load<typeof import('parquet-wasm/node')>('parquet-wasm/node');
  const col = <K extends keyof DecisionRow>(name: K) => rows.map((r) => r[name]);
  const int64 = (
    type: InstanceType<typeof arrow.Int64> | InstanceType<typeof arrow.TimestampMicrosecond>,
    values: Array<bigint | null>,
  ) => {
    const data = new BigInt64Array(values.length);
    const valid = new Uint8Array(Math.ceil(values.length / 8));
    let nulls = 0;
    values.forEach((v, i) => {
      if (v === null) nulls++;
      else {
        data[i] = v;
        valid[i >> 3]! |= 1 << (i & 7);
      }
    });
    return arrow.makeVector(
      arrow.makeData({ type, length: values.length, nullCount: nulls, nullBitmap: valid, data } as never),
    );
  };
  const utf8 = (values: Array<string | null>) => arrow.vectorFromArray(values, new arrow.Utf8());
  const mapType = new arrow.Map_(
    new arrow.Field(
      'entries',
      new arrow.Struct([
        new arrow.Field('key', new arrow.Utf8(), false),
        new arrow.Field('value', new arrow.Utf8(), true),
      ]),
      false,
    ),
  );
  const listType = new arrow.List(new arrow.Field('element', new arrow.Utf8(), false));
  const columns: Record<string, unknown> = {
    decision_id: utf8(col('decision_id')),
    path: utf8(col('path')),
    timestamp: int64(new arrow.TimestampMicrosecond('UTC'), col('timestamp')),
    labels: arrow.vectorFromArray(
      col('labels').map((l) => (l === null ? null : new Map(l))),
      mapType,
    ),
    requested_by: utf8(col('requested_by')),
    req_id: int64(new arrow.Int64(), col('req_id')),
    revision: utf8(col('revision')),
    ...Object.fromEntries(JSON_COLUMNS.slice(0, 5).map((name) => [name, utf8(col(name))])),
    erased: arrow.vectorFromArray(col('erased'), listType),
    masked: arrow.vectorFromArray(col('masked'), listType),
    extra: utf8(col('extra')),
  };
  const table = new arrow.Table(columns as never);
  const codec = {
    zstd: pw.Compression.ZSTD,
    snappy: pw.Compression.SNAPPY,
    gzip: pw.Compression.GZIP,
    none: pw.Compression.UNCOMPRESSED,
  }[compression];
  const props = new pw.WriterPropertiesBuilder()
    .setCompression(codec)
    .setMaxRowGroupSize(ROWS_PER_GROUP)
    .setCreatedBy('bench')
    .build();
  return pw.writeParquet(pw.Table.fromIPCStream(arrow.tableToIPC(table, 'stream')), props);
};

/** @dsnp/parquetjs 1.9 (pure JS, row by row); it has no zstd, and its JSON type re-serializes values, so JSON columns are UTF8. */
const parquetjs: Encoder = async (rows, compression) => {
  const pq = await load<{ default?: unknown } & Record<string, unknown>>('@dsnp/parquetjs');
  const { ParquetSchema, ParquetWriter } = (pq.default ?? pq) as {
    ParquetSchema: new (s: unknown) => unknown;
    ParquetWriter: {
      openStream(
        s: unknown,
        out: unknown,
        o: unknown,
      ): Promise<{ appendRow(r: unknown): Promise<void>; close(): Promise<void> }>;
    };
  };
  if (compression === 'zstd') throw new Error('no zstd codec');
  const c = { snappy: 'SNAPPY', gzip: 'GZIP', none: 'UNCOMPRESSED' }[compression];
  const text = { type: 'UTF8', optional: true, compression: c };
  const schema = new ParquetSchema({
    decision_id: text,
    path: text,
    timestamp: { type: 'TIMESTAMP_MICROS', optional: true, compression: c },
    labels: {
      repeated: true,
      fields: { key: { type: 'UTF8', compression: c }, value: { type: 'UTF8', compression: c } },
    },
    requested_by: text,
    req_id: { type: 'INT64', optional: true, compression: c },
    revision: text,
    ...Object.fromEntries(JSON_COLUMNS.map((name) => [name, text])),
    erased: { type: 'UTF8', repeated: true, compression: c },
    masked: { type: 'UTF8', repeated: true, compression: c },
  });
  const chunks: Buffer[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      done();
    },
  });
  const writer = await ParquetWriter.openStream(schema, out, { rowGroupSize: ROWS_PER_GROUP });
  for (const r of rows) {
    const row: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r)) {
      if (v === null) continue;
      row[k] = k === 'labels' ? (v as Array<[string, string]>).map(([key, value]) => ({ key, value })) : v;
    }
    await writer.appendRow(row);
  }
  await writer.close();
  return Buffer.concat(chunks);
};

/** DuckDB 1.5 (@duckdb/node-api, native) as the writer: rows through its appender, then COPY ... TO parquet, one thread. */
const duckdb: Encoder = async (rows, compression, file) => {
  const { DuckDBInstance, DuckDBTimestampTZValue } = await load<typeof import('@duckdb/node-api')>('@duckdb/node-api');
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const conn = await instance.connect();
  await conn.run(`CREATE TABLE d (decision_id VARCHAR, path VARCHAR, timestamp TIMESTAMPTZ, labels VARCHAR, requested_by VARCHAR, req_id BIGINT, revision VARCHAR,
    bundles VARCHAR, input VARCHAR, result VARCHAR, metrics VARCHAR, nd_builtin_cache VARCHAR, erased VARCHAR, masked VARCHAR, extra VARCHAR)`);
  const appender = await conn.createAppender('d');
  for (const r of rows) {
    for (const [k, v] of Object.entries(r)) {
      if (v === null) appender.appendNull();
      else if (k === 'timestamp') appender.appendTimestampTZ(new DuckDBTimestampTZValue(v as bigint));
      else if (k === 'req_id') appender.appendBigInt(v as bigint);
      else if (k === 'labels') appender.appendVarchar(JSON.stringify(Object.fromEntries(v as Array<[string, string]>)));
      else if (k === 'erased' || k === 'masked') appender.appendVarchar(JSON.stringify(v));
      else appender.appendVarchar(v as string);
    }
    appender.endRow();
  }
  appender.closeSync();
  const codec = { zstd: 'zstd', snappy: 'snappy', gzip: 'gzip', none: 'uncompressed' }[compression];
  await conn.run(`COPY (SELECT decision_id, path, timestamp, labels::JSON::MAP(VARCHAR, VARCHAR) AS labels, requested_by, req_id, revision,
      bundles::JSON AS bundles, input::JSON AS input, result::JSON AS result, metrics::JSON AS metrics, nd_builtin_cache::JSON AS nd_builtin_cache,
      erased::JSON::VARCHAR[] AS erased, masked::JSON::VARCHAR[] AS masked, extra::JSON AS extra FROM d)
    TO '${file}' (FORMAT parquet, COMPRESSION ${codec}, ROW_GROUP_SIZE ${ROWS_PER_GROUP})`);
  conn.closeSync();
  instance.closeSync();
  return readFileSync(file);
};

const CANDIDATES: Record<string, Encoder> = {
  'hyparquet-writer + @bokuweb/zstd-wasm': hyparquet('@bokuweb/zstd-wasm'),
  'hyparquet-writer + @hpcc-js/wasm-zstd': hyparquet('@hpcc-js/wasm-zstd'),
  'parquet-wasm + apache-arrow': parquetWasm,
  '@dsnp/parquetjs': parquetjs,
  '@duckdb/node-api': duckdb,
  // what Sluice will run, from the project's own dependencies: NDJSON in, so splitting into rows is included
  'Sluice: encodeDecisionsParquet (split included)': async (_rows, compression, _file, texts) => {
    const lines = Buffer.from(texts.map((t) => `${t}\n`).join(''));
    const rowGroupBytes = Math.round((lines.length / texts.length) * ROWS_PER_GROUP);
    return (await encodeDecisionsParquet([lines], { compression, rowGroupBytes })).body;
  },
};
/** Candidates that differ from another only in their zstd: measured with zstd alone. */
const ZSTD_ONLY = new Set(['hyparquet-writer + @hpcc-js/wasm-zstd']);

// ---------------------------------------------------------------------------------------------------------
// One measurement (a child process)

interface Measurement {
  candidate: string;
  compression: Compression;
  ok: boolean;
  error?: string;
  encodeMs?: number;
  extractMs?: number;
  bytes?: number;
  deterministic?: boolean;
  maxRssBytes: number;
  file?: string;
}

/**
 * CPU milliseconds (user + system, all threads) since `started`: other work may share this machine's
 * two cores, and CPU time, unlike wall time, does not count the time the process waited for a core.
 */
function cpuMs(started: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(started);
  return (used.user + used.system) / 1000;
}

async function child(candidate: string, compression: Compression): Promise<void> {
  const texts = decisionTexts(decisions);
  const extractStarted = process.cpuUsage();
  const rows = texts.map(decisionRow);
  const extractMs = cpuMs(extractStarted);
  const file = path.join(outDir, `${candidate.replace(/[^a-z0-9]+/gi, '_')}-${compression}.parquet`);
  const report = (m: Omit<Measurement, 'candidate' | 'compression' | 'maxRssBytes'>) => {
    const result: Measurement = { candidate, compression, maxRssBytes: process.resourceUsage().maxRSS * 1024, ...m };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  };
  if (candidate === 'baseline') {
    // what every child does besides encoding, and NDJSON + gzip for reference
    const started = process.cpuUsage();
    const body = gzipSync(texts.map((t) => `${t}\n`).join(''));
    report({ ok: true, encodeMs: cpuMs(started), bytes: body.length, deterministic: true, extractMs });
    return;
  }
  try {
    // the first run loads the library (and compiles its WebAssembly) and warms the JIT; the second is timed
    const first = await CANDIDATES[candidate]!(rows, compression, `${file}.1`, texts);
    const firstHash = createHash('sha256').update(first).digest('hex');
    writeFileSync(file, first);
    const started = process.cpuUsage();
    const second = await CANDIDATES[candidate]!(rows, compression, `${file}.2`, texts);
    const encodeMs = cpuMs(started);
    const deterministic = createHash('sha256').update(second).digest('hex') === firstHash;
    rmSync(`${file}.1`, { force: true });
    rmSync(`${file}.2`, { force: true });
    report({ ok: true, encodeMs, bytes: first.length, deterministic, file });
  } catch (err) {
    report({ ok: false, error: (err as Error).message.split('\n')[0] });
  }
}

// ---------------------------------------------------------------------------------------------------------
// The comparison (the parent)

interface ReadBack {
  rows: number;
  inputExact: boolean;
  types: string;
  createdBy: string;
}

async function readBack(file: string, texts: string[]): Promise<ReadBack | string> {
  try {
    const { DuckDBInstance } = await load<typeof import('@duckdb/node-api')>('@duckdb/node-api');
    const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
    const conn = await instance.connect();
    const q = async (sql: string) =>
      (await conn.runAndReadAll(sql)).getRowObjectsJS() as Array<Record<string, unknown>>;
    const count = Number((await q(`SELECT count(*) AS n FROM '${file}'`))[0]!.n);
    const probe = [0, 7, texts.length - 1];
    const inputs = await q(
      `SELECT decision_id, input::VARCHAR AS input FROM '${file}' WHERE decision_id IN (${probe.map((i) => `'bench-${i}'`).join(',')})`,
    );
    const sent = new Map(probe.map((i) => [`bench-${i}`, decisionRow(texts[i]!).input]));
    const inputExact =
      inputs.length === probe.length && inputs.every((r) => sent.get(String(r.decision_id)) === r.input);
    const types = (
      await q(`SELECT name, logical_type FROM parquet_schema('${file}') WHERE name IN ('timestamp', 'input')`)
    )
      .map((r) => `${String(r.name)}: ${String(r.logical_type).replace(/\(.*$/, '')}`)
      .join(', ');
    const createdBy = String((await q(`SELECT created_by FROM parquet_file_metadata('${file}')`))[0]!.created_by);
    conn.closeSync();
    instance.closeSync();
    return { rows: count, inputExact, types, createdBy };
  } catch (err) {
    return `not read: ${(err as Error).message.split('\n')[0]}`;
  }
}

async function parent(): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  const self = fileURLToPath(import.meta.url);
  const run = (candidate: string, compression: Compression): Measurement => {
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        self,
        '--child',
        candidate,
        '--compression',
        compression,
        '--modules',
        modules,
        '--decisions',
        String(decisions),
        '--out',
        outDir,
      ],
      { encoding: 'utf8', maxBuffer: 1 << 24 },
    );
    const line = r.stdout.trim().split('\n').pop() ?? '';
    try {
      return JSON.parse(line) as Measurement;
    } catch {
      return {
        candidate,
        compression,
        ok: false,
        error: (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`).slice(0, 120),
        maxRssBytes: 0,
      };
    }
  };
  const baseline = run('baseline', 'gzip');
  const texts = decisionTexts(decisions);
  const ndjsonBytes = texts.reduce((n, t) => n + Buffer.byteLength(t) + 1, 0);
  const MiB = 1024 * 1024;
  console.log(
    `${decisions} decisions, ${(ndjsonBytes / decisions).toFixed(0)} bytes each as NDJSON; row groups of ${ROWS_PER_GROUP}; node ${process.version}`,
  );
  console.log(
    `baseline child (decisions made and split into rows, no encoder): peak RSS ${(baseline.maxRssBytes / MiB).toFixed(0)} MiB; splitting into rows (src/formats/decision-row.ts, the same for every writer) ${Math.round(decisions / (baseline.extractMs! / 1000)).toLocaleString('en')} decisions per CPU-second`,
  );
  console.log('');
  console.log(
    '| writer | compression | decisions per CPU-second encoded | peak RSS above baseline | bytes/decision | deterministic | DuckDB reads back |',
  );
  console.log('| --- | --- | ---: | ---: | ---: | --- | --- |');
  console.log(
    `| NDJSON + gzip -6 (reference) | gzip | ${Math.round(decisions / (baseline.encodeMs! / 1000)).toLocaleString('en')} | - | ${(baseline.bytes! / decisions).toFixed(1)} | yes | - |`,
  );
  const only = arg('only', '');
  for (const candidate of Object.keys(CANDIDATES).filter((c) => c.includes(only))) {
    for (const compression of COMPRESSIONS) {
      if (ZSTD_ONLY.has(candidate) && compression !== 'zstd') continue;
      const m = run(candidate, compression);
      if (!m.ok) {
        console.log(`| ${candidate} | ${compression} | fails: ${m.error} | | | | |`);
        continue;
      }
      const back = await readBack(m.file!, texts);
      const backText =
        typeof back === 'string'
          ? back
          : `${back.rows === decisions ? 'all rows' : `${back.rows} rows!`}; input text ${back.inputExact ? 'exact' : 'CHANGED'}; ${back.types}; created_by "${back.createdBy}"`;
      console.log(
        `| ${candidate} | ${compression} | ${Math.round(decisions / (m.encodeMs! / 1000)).toLocaleString('en')} | ${((m.maxRssBytes - baseline.maxRssBytes) / MiB).toFixed(0)} MiB | ${(m.bytes! / decisions).toFixed(1)} | ${m.deterministic ? 'yes' : 'NO'} | ${backText} |`,
      );
    }
  }
}

/**
 * `--memory MiB [--row-group-mib 8]`: the peak RSS of Sluice's encoder over one batch of that many MiB of
 * NDJSON (the default batch `max_bytes` is 64 MiB), with row groups of that size (default 8 MiB, as
 * Sluice's), the decisions made 1 MiB at a time as the decision buffer yields them. The file is written into one buffer,
 * as the encoder thread writes it.
 */
async function memory(mib: number): Promise<void> {
  const { decisionParquetWriter } = await import('../src/formats/parquet-decisions.js');
  const now = new Date('2026-12-01T10:00:00Z');
  const rowGroupMiB = Number(arg('row-group-mib', '8'));
  const writer = await decisionParquetWriter({ compression: 'zstd', rowGroupBytes: rowGroupMiB * 1024 * 1024 });
  global.gc?.();
  const before = process.memoryUsage().rss;
  const kept: Buffer[] = [];
  let bytes = 0;
  let seq = 0;
  const started = process.cpuUsage();
  while (bytes < mib * 1024 * 1024) {
    const group: string[] = [];
    for (let size = 0; size < 1024 * 1024; seq++) {
      const text = `${JSON.stringify(benchDecision(`mem-${seq}`, seq, now))}\n`;
      group.push(text);
      size += text.length;
      bytes += text.length;
    }
    writer.add(Buffer.from(group.join('')));
  }
  kept.push(writer.finish());
  const cpu = cpuMs(started);
  const size = kept.reduce((n, b) => n + b.length, 0);
  const peak = process.resourceUsage().maxRSS * 1024;
  const MiB = 1024 * 1024;
  console.log(
    `${seq} decisions (${(bytes / MiB).toFixed(0)} MiB NDJSON) -> ${(size / MiB).toFixed(1)} MiB Parquet (zstd) with row groups of ${rowGroupMiB} MiB in ${(cpu / 1000).toFixed(1)} CPU-s, making the decisions included; RSS before ${(before / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB`,
  );
}

if (args.includes('--memory')) await memory(Number(arg('memory', '64')));
else if (args.includes('--child')) await child(arg('child', ''), arg('compression', 'zstd') as Compression);
else await parent();
