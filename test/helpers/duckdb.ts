/**
 * Reads Parquet files the way a user's query engine would: with DuckDB (@duckdb/node-api, a devDependency
 * whose native build comes from the npm registry as a platform package; nothing is downloaded at install).
 * One thread: the tests share a small machine.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

export interface DuckDb {
  /** Rows as plain JS values (BIGINT as bigint, lists as arrays). */
  all(sql: string): Promise<Array<Record<string, unknown>>>;
  close(): void;
}

export async function duckdb(): Promise<DuckDb> {
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const conn: DuckDBConnection = await instance.connect();
  return {
    all: async (sql) => (await conn.runAndReadAll(sql)).getRowObjectsJS() as Array<Record<string, unknown>>,
    close: () => {
      conn.closeSync();
      instance.closeSync();
    },
  };
}

/** Writes `body` to `dir/name` and returns the path as an SQL string literal. */
export function parquetFile(dir: string, name: string, body: Buffer): string {
  const file = path.join(dir, name);
  writeFileSync(file, body);
  return `'${file.replace(/'/g, "''")}'`;
}
