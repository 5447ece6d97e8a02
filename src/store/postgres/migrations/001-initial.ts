/**
 * Version 1 of the PostgreSQL store: the tables of the SQLite store (src/store/sqlite/schema.ts, which says
 * what each means), with what several nodes need besides: claims on deliveries and batches (claimed_by,
 * lease_until), the node that made each attempt, counters of pending deliveries, and notifications of
 * changes to tenants and destinations for the nodes' caches.
 *
 * JSON is kept as text, not jsonb: what was stored is given back byte for byte (jsonb would reorder keys).
 * Times the nodes compare with their own clocks (next_attempt_at, received_at, attempts.time) are ms since
 * the epoch as the node saw it; leases are on PostgreSQL's clock (see DB_NOW_MS).
 */
export const MIGRATION_001 = `
CREATE TABLE meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);
-- The cluster's id, part of every batch name: made once, the same for every node of the cluster.
INSERT INTO meta (key, value) VALUES ('cluster_id', substr(md5(random()::text || clock_timestamp()::text), 1, 8));

CREATE TABLE tenants (
  seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id         text NOT NULL UNIQUE,
  metadata   text NOT NULL,
  created_at text NOT NULL,
  updated_at text NOT NULL
);

-- Outlives the tenant's row: deleting a tenant raises it, refusing the tokens issued before (no row: 0).
CREATE TABLE tenant_generations (
  id         text PRIMARY KEY,
  generation bigint NOT NULL
);

CREATE TABLE destinations (
  tenant_id         text NOT NULL,
  id                text NOT NULL,
  type              text NOT NULL,
  topics            text NOT NULL,
  config            text NOT NULL,
  -- AES-256-GCM, see credentials-cipher.ts: every node needs the same api.encryption_key
  credentials       text NOT NULL,
  delivery_metadata text NOT NULL,
  metadata          text NOT NULL,
  batched           boolean NOT NULL,
  filter            text NOT NULL DEFAULT '{}',
  disabled_at       text,
  created_at        text NOT NULL,
  updated_at        text NOT NULL,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX destinations_by_id ON destinations (id);
CREATE INDEX destinations_by_tenant ON destinations (tenant_id, created_at);

CREATE TABLE events (
  seq                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id          text NOT NULL,
  id                 text NOT NULL,
  topic              text NOT NULL,
  time               text NOT NULL,
  time_ms            bigint NOT NULL,
  eligible_for_retry boolean NOT NULL,
  metadata           text NOT NULL,
  data               text NOT NULL,
  received_at        bigint NOT NULL,
  -- one event per (tenant, id) however many nodes publish it at once (INSERT ... ON CONFLICT)
  UNIQUE (tenant_id, id)
);
CREATE INDEX events_by_id ON events (id, seq);
CREATE INDEX events_by_time ON events (time_ms, seq);
CREATE INDEX events_by_tenant_time ON events (tenant_id, time_ms, seq);
CREATE INDEX events_by_received ON events (received_at);

-- seq is an identity: never handed out twice, so batch names made of seqs never repeat.
CREATE TABLE deliveries (
  seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_seq       bigint NOT NULL,
  tenant_id       text NOT NULL,
  destination_id  text NOT NULL,
  status          text NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at bigint NOT NULL,
  object_key      text,
  batch           text,
  manual          boolean NOT NULL DEFAULT false,
  ready           boolean NOT NULL,
  -- the node attempting it, until lease_until (PostgreSQL's clock, ms); then any node may take it
  claimed_by      text,
  lease_until     bigint
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending' AND ready;
CREATE INDEX deliveries_due_by_tenant_destination ON deliveries (tenant_id, destination_id, next_attempt_at)
  WHERE status = 'pending' AND ready;
CREATE INDEX deliveries_by_event ON deliveries (event_seq, destination_id);
CREATE INDEX deliveries_by_tenant_destination ON deliveries (tenant_id, destination_id, status, seq);
CREATE INDEX deliveries_by_batch ON deliveries (batch) WHERE batch IS NOT NULL;

CREATE TABLE event_batches (
  key             text PRIMARY KEY,
  tenant_id       text NOT NULL,
  destination_id  text NOT NULL,
  first_seq       bigint NOT NULL,
  last_seq        bigint NOT NULL,
  count           integer NOT NULL,
  status          text NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at bigint NOT NULL,
  claimed_by      text,
  lease_until     bigint
);
CREATE INDEX event_batches_due ON event_batches (next_attempt_at) WHERE status = 'pending';
CREATE INDEX event_batches_by_destination ON event_batches (tenant_id, destination_id);

-- The number in the key of each batch of retried deliveries: a sequence, never the same twice over all nodes.
CREATE SEQUENCE retried_batches;

CREATE TABLE attempts (
  seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id             text NOT NULL UNIQUE,
  tenant_id      text NOT NULL,
  event_id       text,
  destination_id text NOT NULL,
  status         text NOT NULL,
  code           text,
  response_data  text,
  error          text,
  attempt_number integer NOT NULL,
  manual         boolean NOT NULL,
  time           bigint NOT NULL,
  duration_ms    bigint NOT NULL,
  -- the node that made it
  node_id        text NOT NULL
);
CREATE INDEX attempts_by_event ON attempts (event_id, destination_id);
CREATE INDEX attempts_by_tenant_destination ON attempts (tenant_id, destination_id, seq);
CREATE INDEX attempts_by_destination_id ON attempts (destination_id, seq);
CREATE INDEX attempts_by_time ON attempts (time);

-- Pending deliveries per tenant, kept by every write that changes them, in the same transaction. A tenant's
-- count is the sum of its slots: each transaction adds to one slot of its choosing, so that concurrent
-- publishes of one tenant seldom wait for each other's row lock.
CREATE TABLE pending_counts (
  tenant_id text NOT NULL,
  slot      integer NOT NULL,
  n         bigint NOT NULL,
  PRIMARY KEY (tenant_id, slot)
);

-- Outpost's time buckets (see metrics-buckets.ts truncateTime, which this is line for line).
CREATE FUNCTION metrics_bucket(t bigint, unit text, value integer) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  step bigint;
  day bigint;
  sunday bigint;
  weeks bigint;
  months bigint;
  aligned bigint;
BEGIN
  IF unit IN ('s', 'm', 'h') THEN
    step := value * CASE unit WHEN 's' THEN 1000 WHEN 'm' THEN 60000 ELSE 3600000 END;
    -- from Go's zero time (0001-01-01), as Go's Truncate
    RETURN t - ((((t + 62135596800000) % step) + step) % step);
  ELSIF unit = 'd' THEN
    RETURN floor(floor(t::numeric / 86400000) / value) * value * 86400000;
  ELSIF unit = 'w' THEN
    day := floor(t::numeric / 86400000);
    sunday := day - ((((day + 4) % 7) + 7) % 7);
    weeks := floor((sunday - 3)::numeric / 7);
    RETURN (3 + floor(weeks::numeric / value) * value * 7) * 86400000;
  ELSIF unit = 'M' THEN
    months := (extract(year FROM to_timestamp(t / 1000.0) AT TIME ZONE 'UTC')::bigint - 1970) * 12
      + extract(month FROM to_timestamp(t / 1000.0) AT TIME ZONE 'UTC')::bigint - 1;
    aligned := floor(months::numeric / value) * value;
    -- Date.UTC(1970 + floor(aligned / 12), aligned % 12, 1), with JavaScript's % (the dividend's sign) as there
    RETURN (extract(epoch FROM timestamp '1970-01-01'
      + make_interval(years => floor(aligned::numeric / 12)::integer, months => (aligned % 12)::integer)) * 1000)::bigint;
  END IF;
  RAISE EXCEPTION 'unknown granularity unit %', unit;
END
$$;

-- Every change to a tenant, its generation or its destinations is told to all nodes (sent at commit), so
-- that their caches drop what changed: {"schema", "tenant"}.
CREATE FUNCTION notify_tenant_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  tenant text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    tenant := to_jsonb(OLD) ->> TG_ARGV[0];
  ELSE
    tenant := to_jsonb(NEW) ->> TG_ARGV[0];
  END IF;
  PERFORM pg_notify('sluice_changes', json_build_object('schema', TG_TABLE_SCHEMA, 'tenant', tenant)::text);
  RETURN NULL;
END
$$;
CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
  FOR EACH ROW EXECUTE FUNCTION notify_tenant_change('id');
CREATE TRIGGER tenant_generations_changed AFTER INSERT OR UPDATE OR DELETE ON tenant_generations
  FOR EACH ROW EXECUTE FUNCTION notify_tenant_change('id');
CREATE TRIGGER destinations_changed AFTER INSERT OR UPDATE OR DELETE ON destinations
  FOR EACH ROW EXECUTE FUNCTION notify_tenant_change('tenant_id');
`;
