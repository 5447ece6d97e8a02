import type Database from 'better-sqlite3';

/**
 * Destinations. Ids are unique per tenant, not globally: a tenant choosing an id must learn nothing about the
 * ids of other tenants, so the key is (tenant_id, id) and every reference to a destination carries its tenant.
 * A function of the name, for the rebuild of databases made when the id alone was the key (see migrate below).
 */
function destinationsTable(name: string): string {
  return `CREATE TABLE IF NOT EXISTS ${name} (
  id                TEXT NOT NULL,
  tenant_id         TEXT NOT NULL,
  type              TEXT NOT NULL,
  topics            TEXT NOT NULL,
  config            TEXT NOT NULL,
  -- AES-256-GCM, see credentials-cipher.ts
  credentials       TEXT NOT NULL,
  delivery_metadata TEXT NOT NULL,
  metadata          TEXT NOT NULL,
  -- 1 when config.batching is set: delivered in batches rather than one object per event
  batched           INTEGER NOT NULL,
  -- Outpost's event filter, JSON; '{}' = every event of its topics
  filter            TEXT NOT NULL DEFAULT '{}',
  disabled_at       TEXT,
  created_at        TEXT NOT NULL,
  updated_at        TEXT NOT NULL,
  PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;`;
}

/** The control plane's tables. See src/store/types.ts for what they mean. */
export const STORE_SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tenants (
  seq        INTEGER PRIMARY KEY,
  id         TEXT    NOT NULL UNIQUE,
  metadata   TEXT    NOT NULL,
  created_at TEXT    NOT NULL,
  updated_at TEXT    NOT NULL
);

-- A tenant's token generation, kept when the tenant is deleted: deleting a tenant raises it, and a tenant
-- token carries the generation it was issued in, so tokens from before a deletion (or before a re-creation
-- with the same id) are refused. No row: generation 0.
CREATE TABLE IF NOT EXISTS tenant_generations (
  id         TEXT    PRIMARY KEY,
  generation INTEGER NOT NULL
) WITHOUT ROWID;

${destinationsTable('destinations')}
CREATE INDEX IF NOT EXISTS destinations_by_tenant ON destinations (tenant_id, created_at);

CREATE TABLE IF NOT EXISTS events (
  seq                INTEGER PRIMARY KEY,
  tenant_id          TEXT    NOT NULL,
  id                 TEXT    NOT NULL,
  topic              TEXT    NOT NULL,
  time               TEXT    NOT NULL,
  time_ms            INTEGER NOT NULL,
  eligible_for_retry INTEGER NOT NULL,
  metadata           TEXT    NOT NULL,
  data               TEXT    NOT NULL,
  received_at        INTEGER NOT NULL,
  UNIQUE (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS events_by_id ON events (id);
-- lists and metrics by the event's own time (GET /events orders by it)
CREATE INDEX IF NOT EXISTS events_by_time ON events (time_ms, seq);
CREATE INDEX IF NOT EXISTS events_by_tenant_time ON events (tenant_id, time_ms, seq);

-- One per event and destination it goes to; seq orders a batched destination's events.
CREATE TABLE IF NOT EXISTS deliveries (
  seq             INTEGER PRIMARY KEY,
  event_seq       INTEGER NOT NULL,
  -- the event's tenant: a destination is (tenant_id, destination_id)
  tenant_id       TEXT    NOT NULL,
  destination_id  TEXT    NOT NULL,
  status          TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  object_key      TEXT,
  batch           TEXT,
  manual          INTEGER NOT NULL DEFAULT 0,
  -- 1 while the per-event dispatcher may pick it: its destination is enabled and not batched. Kept in the
  -- row so that finding due deliveries never walks past those of disabled or batched destinations.
  ready           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending' AND ready = 1;
CREATE INDEX IF NOT EXISTS deliveries_due_by_tenant_destination ON deliveries (tenant_id, destination_id, next_attempt_at) WHERE status = 'pending' AND ready = 1;
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_seq, destination_id);
CREATE INDEX IF NOT EXISTS deliveries_by_tenant_destination ON deliveries (tenant_id, destination_id, status, seq);
CREATE INDEX IF NOT EXISTS deliveries_by_batch ON deliveries (batch) WHERE batch IS NOT NULL;

-- Batches of batched destinations, recorded before their upload (status pending).
CREATE TABLE IF NOT EXISTS event_batches (
  key             TEXT    PRIMARY KEY,
  tenant_id       TEXT    NOT NULL,
  destination_id  TEXT    NOT NULL,
  first_seq       INTEGER NOT NULL,
  last_seq        INTEGER NOT NULL,
  count           INTEGER NOT NULL,
  status          TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS attempts (
  seq            INTEGER PRIMARY KEY,
  id             TEXT    NOT NULL UNIQUE,
  tenant_id      TEXT    NOT NULL,
  event_id       TEXT,
  destination_id TEXT    NOT NULL,
  status         TEXT    NOT NULL,
  code           TEXT,
  response_data  TEXT,
  error          TEXT,
  attempt_number INTEGER NOT NULL,
  manual         INTEGER NOT NULL,
  time           INTEGER NOT NULL,
  duration_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_event ON attempts (event_id, destination_id);
CREATE INDEX IF NOT EXISTS attempts_by_tenant_destination ON attempts (tenant_id, destination_id, seq);
CREATE INDEX IF NOT EXISTS attempts_by_destination_id ON attempts (destination_id, seq);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (time);

-- Delivery seqs name batched objects ({destination}-{store}-{first}-{last}): they must never repeat, also
-- after the newest rows were pruned or deleted (SQLite would hand out max(seq) + 1 again and a new batch
-- would overwrite an old object). Deleting the newest row records its seq; new rows start above it.
CREATE TRIGGER IF NOT EXISTS deliveries_seq_floor BEFORE DELETE ON deliveries
  WHEN old.seq = (SELECT max(seq) FROM deliveries)
BEGIN
  INSERT INTO meta (key, value) VALUES ('delivery_seq_floor', old.seq)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE CAST(value AS INTEGER) < CAST(excluded.value AS INTEGER);
END;
`;

/**
 * Columns added in later versions, to tables of databases made before them (see WalDatabase). '' is no
 * tenant id (ids have at least one character): migrate() fills them in.
 */
export const STORE_ADDED_COLUMNS: Array<[string, string, string]> = [
  ['deliveries', 'tenant_id', "TEXT NOT NULL DEFAULT ''"],
  ['event_batches', 'tenant_id', "TEXT NOT NULL DEFAULT ''"],
  ['destinations', 'filter', "TEXT NOT NULL DEFAULT '{}'"],
];

/** The meta key set once a database has destination ids scoped per tenant. */
const TENANT_SCOPED_IDS = 'tenant_scoped_destination_ids';

/**
 * Brings a database made when destination ids were global up to per-tenant ids, once (after STORE_SCHEMA,
 * in one transaction): the tenant of every delivery and batch filled in, the destinations table rebuilt
 * with (tenant_id, id) as its key, and the indexes by destination id alone dropped. A new database only
 * records that it needs none of it.
 */
export function migrateStore(db: Database.Database): void {
  const done = db.prepare('SELECT 1 FROM meta WHERE key = ?').get(TENANT_SCOPED_IDS);
  if (done) return;
  db.transaction(() => {
    // ids were global then, so the destination id alone says whose a batch was; a delivery has its event's tenant
    db.exec(`UPDATE deliveries SET tenant_id = (SELECT e.tenant_id FROM events e WHERE e.seq = deliveries.event_seq) WHERE tenant_id = '';
      UPDATE event_batches SET tenant_id = coalesce(
        (SELECT t.tenant_id FROM destinations t WHERE t.id = event_batches.destination_id),
        (SELECT d.tenant_id FROM deliveries d WHERE d.batch = event_batches.key LIMIT 1), '') WHERE tenant_id = '';
      DROP INDEX IF EXISTS deliveries_due_by_destination;
      DROP INDEX IF EXISTS deliveries_by_destination;
      DROP INDEX IF EXISTS attempts_by_destination;`);
    const keyed = db
      .prepare("SELECT pk FROM pragma_table_info('destinations') WHERE name = 'tenant_id'")
      .pluck()
      .get() as number | undefined;
    if (!keyed) {
      const columns =
        'id, tenant_id, type, topics, config, credentials, delivery_metadata, metadata, batched, disabled_at, created_at, updated_at';
      db.exec(`${destinationsTable('destinations_scoped')}
        INSERT INTO destinations_scoped (${columns}) SELECT ${columns} FROM destinations;
        DROP TABLE destinations;
        ALTER TABLE destinations_scoped RENAME TO destinations;
        CREATE INDEX IF NOT EXISTS destinations_by_tenant ON destinations (tenant_id, created_at);`);
    }
    db.prepare("INSERT INTO meta (key, value) VALUES (?, '1')").run(TENANT_SCOPED_IDS);
  })();
}
