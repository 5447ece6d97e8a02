/**
 * Parquet objects as a `format: parquet` output writes them, for tests of what reads them back (`sluice
 * query`, the console, `sluice table` + DuckDB): decisions grouped per stream (partition and the UTC hour of
 * each decision's own timestamp), each stream one object of the groundwork writer (src/formats/
 * parquet-decisions.ts) under the key the output's template gives it, into an s3rver bucket or a file
 * output's directory. Also decisions made for queries: spread over days, paths, users and results.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { encodeDecisionsParquet } from '../../src/formats/parquet-decisions.js';
import type { ParquetCompression } from '../../src/formats/parquet-options.js';
import { DEFAULT_KEY_TEMPLATE, keyValues, renderKey } from '../../src/delivery/object-keys.js';
import type { TestS3 } from './s3.js';

/** A decision's text and the partition it was posted to. */
export interface SentDecision {
  partition: string;
  text: string;
}

/** Where objects go: an s3rver bucket, or a file output's directory. */
export type ObjectTarget = { s3: TestS3; bucket: string } | { dir: string };

export async function putObject(target: ObjectTarget, key: string, body: Buffer): Promise<void> {
  if ('dir' in target) {
    const file = path.join(target.dir, key);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, body);
    return;
  }
  await target.s3.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: key, Body: body }));
}

/** The UTC hour `YYYY-MM-DDTHH` of a decision's timestamp (the arrival hour `fallbackHour` without one). */
function streamHour(text: string, fallbackHour: string): string {
  const t = (JSON.parse(text) as { timestamp?: unknown }).timestamp;
  const ms = typeof t === 'string' ? Date.parse(t) : Number.NaN;
  return Number.isNaN(ms) ? fallbackHour : new Date(ms).toISOString().slice(0, 13);
}

/**
 * Writes the decisions as Parquet objects, one per stream, with the keys of `template` (the hive layout by
 * default): returns the keys written.
 */
export async function writeParquetObjects(
  target: ObjectTarget,
  decisions: SentDecision[],
  opts: { output?: string; template?: string; compression?: ParquetCompression; rowGroupBytes?: number } = {},
): Promise<string[]> {
  const output = opts.output ?? 'archive';
  const fallbackHour = new Date().toISOString().slice(0, 13);
  const streams = new Map<string, { partition: string; hour: string; lines: string[] }>();
  for (const d of decisions) {
    const hour = streamHour(d.text, fallbackHour);
    const id = `${d.partition}\n${hour}`;
    if (!streams.has(id)) streams.set(id, { partition: d.partition, hour, lines: [] });
    streams.get(id)!.lines.push(d.text);
  }
  const keys: string[] = [];
  let position = 1;
  for (const { partition, hour, lines } of streams.values()) {
    const { body } = await encodeDecisionsParquet([Buffer.from(`${lines.join('\n')}\n`)], {
      compression: opts.compression ?? 'zstd',
      rowGroupBytes: opts.rowGroupBytes,
    });
    const values = keyValues({
      output,
      bufferId: '0a1b2c3d',
      partition,
      hour,
      first: position,
      last: position + lines.length - 1,
      ext: 'parquet',
    });
    position += lines.length;
    const key = renderKey(opts.template ?? DEFAULT_KEY_TEMPLATE, values);
    await putObject(target, key, body);
    keys.push(key);
  }
  return keys;
}

/** `timestamp` text `days` (and `hours`) ago, with microseconds, as a Parquet TIMESTAMP(MICROS) keeps it exactly. */
export function daysAgo(days: number, hours = 0, now = Date.now()): string {
  const ms = now - days * 86_400_000 - hours * 3_600_000;
  return new Date(ms).toISOString().replace('Z', '123Z');
}

/**
 * Decisions for the README's queries, in OPA's member order: over the last 10 days, two partitions, two
 * policies; bob is denied authz/allow 3 times in the last week (and once 9 days ago), allowed once; alice is
 * allowed; one decision holds 20-digit integers and one an odd timestamp and req_id (which go to `extra`).
 */
export function queryDecisions(now = Date.now()): Array<SentDecision & { id: string }> {
  const out: Array<SentDecision & { id: string }> = [];
  const add = (
    id: string,
    partition: string,
    user: string,
    decisionPath: string,
    result: string,
    timestamp: string,
    extra = '',
  ) => {
    const text =
      `{"labels":{"id":"opa-1","version":"1.4.2"},"decision_id":"${id}","path":"${decisionPath}",` +
      `"input":{"user":{"name":"${user}"},"method":"GET","n":12345678901234567890},"result":${result},` +
      `"requested_by":"127.0.0.1:5000","timestamp":"${timestamp}","metrics":{"timer_server_handler_ns":76383},"req_id":7${extra}}`;
    out.push({ id, partition, text });
  };
  add('bob-deny-1', 'default', 'bob', 'authz/allow', 'false', daysAgo(1, 2, now));
  add('bob-deny-2', 'default', 'bob', 'authz/allow', 'false', daysAgo(1, 2, now));
  add('bob-deny-3', 'acme', 'bob', 'authz/allow', 'false', daysAgo(3, 0, now));
  add('bob-old-deny', 'default', 'bob', 'authz/allow', 'false', daysAgo(9, 0, now));
  add('bob-allow', 'default', 'bob', 'authz/allow', 'true', daysAgo(2, 0, now));
  add('bob-admin-deny', 'acme', 'bob', 'http/admin', 'false', daysAgo(1, 2, now));
  add('alice-allow-1', 'default', 'alice', 'authz/allow', 'true', daysAgo(1, 2, now));
  add('alice-allow-2', 'acme', 'alice', 'authz/allow', 'true', daysAgo(4, 0, now));
  add(
    'alice-result',
    'default',
    'alice',
    'http/admin',
    '{"allow":false,"big":98765432109876543210}',
    daysAgo(1, 2, now),
  );
  return out;
}
