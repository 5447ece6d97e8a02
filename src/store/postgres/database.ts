import pg from 'pg';

/** What a query runs on: the pool (a statement of its own) or a client inside a transaction. */
export interface Sql {
  query<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string | pg.QueryConfig,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

/**
 * A statement each connection parses once, at its first use, and then only binds and runs: for those run by
 * every publish. Its name is its identity on the connection, so each name must be given one text only.
 */
export interface Prepared {
  name: string;
  text: string;
}

/** The prepared statement with these values, to run (a new config each time: pg keeps the values in it). */
export function bound(statement: Prepared, values: unknown[]): pg.QueryConfig {
  return { name: statement.name, text: statement.text, values };
}

/** PostgreSQL's clock in ms since the epoch: leases are measured on it, so that nodes' clocks need not agree. */
export const DB_NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** Schema names are put in SQL as they are: letters, digits and `_` only, so none needs quoting. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Errors after which the same transaction, run again, may well succeed: a deadlock or a serialization failure. */
export const RETRYABLE = new Set(['40P01', '40001']);
/**
 * Runs of a transaction at most. Two nodes publishing the same ids in opposite orders deadlock, and would
 * again if both ran again at once: each waits a random while first, longer every time.
 */
const ATTEMPTS = 6;
const RETRY_BASE_MS = 10;

/**
 * int8 (counts, seqs, ms timestamps) and numeric (sums) as numbers: every such value here is far below 2^53.
 * Per pool, so no other user of `pg` in the process is changed.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === pg.types.builtins.INT8 || oid === pg.types.builtins.NUMERIC) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

export interface DatabaseOptions {
  url: string;
  /** Connections at most. */
  pool: number;
  /** Where the tables are (created if missing); one schema per cluster, or per test suite. */
  schema: string;
}

/** The checked schema name, or an Error that says what is wrong with it. */
export function checkSchemaName(schema: string): string {
  if (!SCHEMA_NAME.test(schema))
    throw new Error(`store.schema "${schema}" must be 1 to 63 of a-z, 0-9 and _, not starting with a digit`);
  return schema;
}

/**
 * A pool of connections to the store's PostgreSQL, each with the store's schema as its search_path, and its
 * transactions. Knows nothing of the tables.
 */
export class PgDatabase {
  readonly pool: pg.Pool;
  readonly schema: string;
  /** The connection settings, for a client of its own (the change listener's LISTEN). */
  readonly clientConfig: pg.ClientConfig;

  constructor(options: DatabaseOptions) {
    this.schema = checkSchemaName(options.schema);
    this.clientConfig = {
      connectionString: options.url,
      // the schema first and alone: what the migrations create lands in it, and nothing of another is read
      options: `-c search_path=${this.schema}`,
      types,
      connectionTimeoutMillis: 10_000,
      application_name: 'sluice',
    };
    this.pool = new pg.Pool({ ...this.clientConfig, max: options.pool });
    // an idle connection that breaks (the server restarted) is dropped by the pool; without a listener the
    // error would end the process
    this.pool.on('error', () => {});
  }

  query<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string | pg.QueryConfig,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    return typeof text === 'string' ? this.pool.query<R>(text, values) : this.pool.query<R>(text);
  }

  /**
   * Runs `work` in one transaction (READ COMMITTED) and commits: resolved only once PostgreSQL has committed
   * it (synchronous_commit as the server has it: on by default, durable). A deadlock or serialization failure
   * runs it again (up to ATTEMPTS runs in all), so `work` must not change anything outside the database.
   */
  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch {
          // the connection itself failed: not given back to the pool
          broken = true;
        }
        const code = (err as { code?: string }).code;
        if (attempt >= ATTEMPTS || code === undefined || !RETRYABLE.has(code)) throw err;
      } finally {
        client.release(broken);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.random() * RETRY_BASE_MS * 2 ** attempt));
    }
  }

  end(): Promise<void> {
    return this.pool.end();
  }
}

/** `$n` placeholders for a list of values that grows as a query is built. */
export class Params {
  constructor(readonly values: unknown[] = []) {}

  /** Another list starting with these values: a second query over the same conditions. */
  copy(): Params {
    return new Params([...this.values]);
  }

  /** The placeholder of a new value. */
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/** PostgreSQL text cannot hold U+0000: no stored key has one, so a key with one names nothing. */
export function hasNul(...values: Array<string | undefined>): boolean {
  return values.some((v) => v !== undefined && v.includes('\u0000'));
}

/** A value PostgreSQL cannot store as it is (text with U+0000): refused, never stored altered. */
export class UnstorableTextError extends Error {
  readonly statusCode = 400;

  constructor(field: string) {
    super(`${field} contains a NUL character (U+0000), which the PostgreSQL store cannot hold`);
  }
}
