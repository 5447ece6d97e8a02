/**
 * The PostgreSQL the suites of the PostgreSQL store run on: 127.0.0.1:5432, trust auth, database `test`
 * (SLUICE_TEST_POSTGRES_URL names another). Each suite works in a schema of its own, dropped afterwards.
 * Where it cannot be reached, the suite says so in one line and its tests are skipped.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const POSTGRES_URL = process.env.SLUICE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Why PostgreSQL cannot be used (undefined: it can), found out once per process. */
let probed: Promise<string | undefined> | undefined;

export function postgresUnavailable(): Promise<string | undefined> {
  probed ??= (async () => {
    const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return undefined;
    } catch (err) {
      return `${POSTGRES_URL.replace(/\/\/[^@]*@/, '//')} is not reachable (${(err as Error).message})`;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return probed;
}

/**
 * The `skip` option of a suite's tests: false where PostgreSQL runs, else the reason, said once in the
 * suite's output (the line a reader looks for when PostgreSQL tests did not run).
 */
export async function skipWithoutPostgres(suite: string): Promise<string | false> {
  const reason = await postgresUnavailable();
  if (!reason) return false;
  console.log(`# ${suite}: PostgreSQL suites skipped: ${reason}`);
  return `PostgreSQL is not reachable`;
}

/** A fresh schema name for one suite or test. */
export function schemaName(prefix: string): string {
  return `sluice_test_${prefix}_${randomBytes(4).toString('hex')}`;
}

/** Drops a schema with everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

/** A statement run on the test database directly, beside the stores (to look at or change what they keep). */
export async function sql(schema: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, options: `-c search_path=${schema}` });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}
