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

CREATE TABLE IF NOT EXISTS destinations (
  id                TEXT PRIMARY KEY,
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
  disabled_at       TEXT,
  created_at        TEXT NOT NULL,
  updated_at        TEXT NOT NULL
) WITHOUT ROWID;
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

-- One per event and destination it goes to; seq orders a batched destination's events.
CREATE TABLE IF NOT EXISTS deliveries (
  seq             INTEGER PRIMARY KEY,
  event_seq       INTEGER NOT NULL,
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
CREATE INDEX IF NOT EXISTS deliveries_due_by_destination ON deliveries (destination_id, next_attempt_at) WHERE status = 'pending' AND ready = 1;
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_seq, destination_id);
CREATE INDEX IF NOT EXISTS deliveries_by_destination ON deliveries (destination_id, status, seq);
CREATE INDEX IF NOT EXISTS deliveries_by_batch ON deliveries (batch) WHERE batch IS NOT NULL;

-- Batches of batched destinations, recorded before their upload (status pending).
CREATE TABLE IF NOT EXISTS event_batches (
  key             TEXT    PRIMARY KEY,
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
CREATE INDEX IF NOT EXISTS attempts_by_destination ON attempts (destination_id, seq);
`;
