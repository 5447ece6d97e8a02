/** The durable buffer's tables. See src/buffer/types.ts for what they mean. */
export const SCHEMA = `
-- The durable buffer of decisions and the positions of each output. See src/buffer/types.ts.
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- NDJSON chunks of decisions; pos is the position of the chunk's first decision.
CREATE TABLE IF NOT EXISTS chunks (
  pos         INTEGER PRIMARY KEY,
  last_pos    INTEGER NOT NULL,
  partition   TEXT    NOT NULL,
  hour        TEXT    NOT NULL,
  count       INTEGER NOT NULL,
  bytes       INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  payload     BLOB    NOT NULL,
  -- labels.id of the OPA that sent the decisions ('' when none): outputs that batch per OPA instance group by it
  instance    TEXT    NOT NULL DEFAULT '',
  -- CRC32 of payload, computed at append and checked at every read; NULL in rows from before the column (unchecked)
  crc         INTEGER,
  -- 1: payload is one gzip member of the NDJSON (compressed at ingest); bytes is then its size uncompressed
  compressed  INTEGER NOT NULL DEFAULT 0,
  -- the payload's size as stored (what counts against buffer.max_bytes); NULL in rows from before: = bytes
  stored_bytes INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_by_stream ON chunks (partition, hour, last_pos);

-- What was accepted recently (request digests, decision ids), one row per request, written with its chunks:
-- a re-sent request or decision within the window is acknowledged and not stored again, also after a restart.
CREATE TABLE IF NOT EXISTS accepted (
  at   INTEGER NOT NULL,
  keys TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS accepted_by_time ON accepted (at);

-- Every position <= cursors.pos has been delivered by that output.
CREATE TABLE IF NOT EXISTS cursors (
  output TEXT PRIMARY KEY,
  pos    INTEGER NOT NULL
) WITHOUT ROWID;

-- Batches fixed before their upload (done = 0) and delivered ones the cursor has not yet passed (done = 1).
-- After a crash the pending ones are uploaded again with the same key and bytes, and the done ones tell
-- which decisions beyond the cursor were already delivered.
CREATE TABLE IF NOT EXISTS batches (
  output    TEXT    NOT NULL,
  first_pos INTEGER NOT NULL,
  last_pos  INTEGER NOT NULL,
  partition TEXT    NOT NULL,
  hour      TEXT    NOT NULL,
  count     INTEGER NOT NULL,
  bytes     INTEGER NOT NULL,
  done      INTEGER NOT NULL DEFAULT 0,
  -- the OPA instance of a per-instance batch; NULL: decisions of every instance
  instance  TEXT,
  PRIMARY KEY (output, first_pos)
) WITHOUT ROWID;
-- completing a batch forgets the done ones the cursor passed: found without scanning every batch
CREATE INDEX IF NOT EXISTS batches_done ON batches (output, done, last_pos);
`;

/** Columns added since the first release, for buffers created before them: [table, column, definition]. */
export const ADDED_COLUMNS: Array<[string, string, string]> = [
  ['chunks', 'instance', "TEXT NOT NULL DEFAULT ''"],
  ['batches', 'instance', 'TEXT'],
  ['chunks', 'crc', 'INTEGER'],
  // 1: the payload is one gzip member of the NDJSON (compressed at ingest); stored_bytes its size on disk
  ['chunks', 'compressed', 'INTEGER NOT NULL DEFAULT 0'],
  ['chunks', 'stored_bytes', 'INTEGER'],
];
