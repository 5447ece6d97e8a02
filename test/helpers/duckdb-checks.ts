/**
 * Checks of a DuckDB view over an output's objects, for every test that makes one (Parquet or NDJSON, from
 * the groundwork writer or a real output): the script `sluice table --engine duckdb` prints, run as DuckDB's
 * shell runs it; rows per partition, date and hour; column types; and the README's example queries
 * ("Querying your decisions"), read from the README itself so that the documentation and the test cannot drift.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DuckDb } from './duckdb.js';
import type { SentDecision } from './parquet-objects.js';

const README = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md');

/** Runs a script of several statements as DuckDB's shell would (`.read`): one statement at a time. */
export async function runScript(db: DuckDb, script: string): Promise<void> {
  const statements = script
    .split('\n')
    .filter((l) => !l.startsWith('--'))
    .join('\n')
    .split(/;\s*$/m)
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const s of statements) await db.all(s);
}

/** The README's example queries, in the order they are written (```sql blocks of "Querying your decisions"). */
export function readmeQueries(): string[] {
  const readme = readFileSync(README, 'utf8');
  const section = readme.slice(readme.indexOf('## Querying your decisions'));
  const body = section.slice(0, section.indexOf('\n## ', 3));
  const marked = body.slice(body.indexOf('<!-- example queries'));
  return [...marked.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!.trim()).slice(0, 3);
}

/** The ids the README's three queries must return over queryDecisions(). */
export const EXPECTED = {
  deniedLastWeek: ['bob-deny-3', 'bob-deny-1', 'bob-deny-2'],
  bob: ['bob-old-deny', 'bob-deny-3', 'bob-allow', 'bob-admin-deny', 'bob-deny-1', 'bob-deny-2'],
};

/** Checks the view's rows against queryDecisions() as sent (rows without a timestamp aside): counts per partition/date/hour, types, and the three queries. */
export async function checkView(
  db: DuckDb,
  view: string,
  sent: SentDecision[],
  jsonText: 'exact' | 'parsed',
): Promise<void> {
  const counts = new Map<string, number>();
  for (const d of sent) {
    const t = (JSON.parse(d.text) as { timestamp: string }).timestamp;
    const key = `${d.partition} ${t.slice(0, 10)} ${Number(t.slice(11, 13))}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const rows = await db.all(
    `SELECT "partition", strftime(dt, '%Y-%m-%d') AS dt, hour, count(*)::INTEGER AS n FROM "${view}" WHERE "timestamp" IS NOT NULL GROUP BY ALL ORDER BY ALL`,
  );
  assert.deepEqual(
    new Map(rows.map((r) => [`${r.partition} ${r.dt} ${r.hour}`, r.n])),
    counts,
    'rows per partition, date and hour are what was sent',
  );
  const [type] = await db.all(`SELECT typeof("timestamp") AS t, typeof(input) AS i FROM "${view}" LIMIT 1`);
  assert.deepEqual(type, { t: 'TIMESTAMP WITH TIME ZONE', i: 'JSON' });
  if (jsonText === 'exact') {
    const [r] = await db.all(
      `SELECT input::VARCHAR AS input, result::VARCHAR AS result FROM "${view}" WHERE decision_id = 'alice-result'`,
    );
    assert.deepEqual(r, {
      input: '{"user":{"name":"alice"},"method":"GET","n":12345678901234567890}',
      result: '{"allow":false,"big":98765432109876543210}',
    });
  }

  const [deniedLastWeek, bob, perHour] = readmeQueries().map((q) => q.replaceAll('archive', `"${view}"`));
  assert.ok(deniedLastWeek && bob && perHour, 'the README has three example queries');
  assert.deepEqual(
    (await db.all(deniedLastWeek)).map((r) => r.decision_id),
    EXPECTED.deniedLastWeek,
  );
  assert.deepEqual(
    (await db.all(bob)).map((r) => r.decision_id),
    EXPECTED.bob,
  );
  const denials = new Map<string, bigint>();
  for (const d of sent) {
    const v = JSON.parse(d.text) as { path: string; result: unknown; timestamp: string };
    if (v.result !== false) continue;
    const key = `${v.path} ${v.timestamp.slice(0, 13)}`;
    denials.set(key, (denials.get(key) ?? 0n) + 1n);
  }
  const got = await db.all(perHour);
  assert.deepEqual(
    new Map(got.map((r) => [`${r.path} ${new Date(String(r.at_hour)).toISOString().slice(0, 13)}`, r.denials])),
    denials,
  );
}
