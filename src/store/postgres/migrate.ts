import type { PgDatabase } from './database.js';
import { MIGRATIONS, type Migration } from './migrations/index.js';

/** A database whose schema is newer than this version of Sluice knows: it refuses to start on it. */
export class SchemaTooNewError extends Error {
  constructor(
    readonly schema: string,
    readonly found: number,
    readonly known: number,
  ) {
    super(
      `the PostgreSQL store (schema "${schema}") is at version ${found}, newer than this version of Sluice knows (${known}): ` +
        'a newer Sluice migrated it. Run that version (or newer) on every node; this one would misread its tables',
    );
  }
}

/**
 * Brings the schema up to the newest migration: at start, in one transaction, under an advisory lock of the
 * schema, so that nodes starting at once apply each migration once (the others wait, then find nothing to
 * do). Refuses (SchemaTooNewError) a schema migrated by a newer version. Returns the version it is at.
 */
export async function migrate(db: PgDatabase, migrations: Migration[] = MIGRATIONS): Promise<number> {
  const known = migrations.at(-1)?.version ?? 0;
  return db.transaction(async (tx) => {
    // the lock is the database's, keyed by the schema: suites in schemas of their own do not wait for each other
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('sluice'), hashtext($1 || ':migrate'))", [db.schema]);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${db.schema}`);
    await tx.query(`CREATE TABLE IF NOT EXISTS sluice_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await tx.query<{ version: number | null }>(
      'SELECT max(version) AS version FROM sluice_migrations',
    );
    const current = rows[0]?.version ?? 0;
    if (current > known) throw new SchemaTooNewError(db.schema, current, known);
    for (const migration of migrations) {
      if (migration.version <= current) continue;
      await tx.query(migration.sql);
      await tx.query('INSERT INTO sluice_migrations (version, name) VALUES ($1, $2)', [
        migration.version,
        migration.name,
      ]);
    }
    return known;
  });
}
