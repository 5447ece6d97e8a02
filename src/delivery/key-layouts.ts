import type { SealedBatch } from '../buffer/types.js';
import type { OutputObjects } from '../sinks/types.js';
import { parseEventTime } from '../time/event-time.js';
import { DEFAULT_KEY_TEMPLATE, keyValues, padPosition, renderKey } from './object-keys.js';
import type { Encoding } from './encode.js';
import { extension } from './encode.js';

/**
 * How an output names its objects: a template of `{placeholders}` (the `hive` layout by default), or a
 * named preset. Presets reproduce the layouts users move from:
 *
 *   hive                 {partition}/dt={date}/hour={hour}/{batch}.{ext}                  (batches)
 *   eopa                 eopa=<labels.id>/first_ts=<unix>/last_ts=<unix>/batch_id=<id>.jsonl[.gz]
 *                        (batches, one per OPA instance: Enterprise OPA's eopa_dl)
 *   eopa-per-decision    eopa=<labels.id>/ts=<unix>/decision_id=<decision_id>.json      (one per decision)
 *   hourly-per-decision  YYYY/MM/DD/HH/<decision_id>.json  (one per decision, hour it was received, UTC)
 *   outpost              <timestamp RFC 3339 nano>_<decision_id>.json                     (one per decision)
 *
 * Every key derives from what is fixed before the upload (positions, the decisions themselves, the time the
 * buffer received them), so a retry rewrites the same key.
 */
export interface KeyLayout {
  /** One object per decision: batches hold exactly one. */
  perDecision: boolean;
  /** Batches are cut per OPA instance (labels.id) as well as per partition and hour. */
  byInstance: boolean;
  /** The key needs the batch's decisions (parsed); otherwise only its positions. */
  needsDecisions: boolean;
  /** The Content-Type its NDJSON and JSON objects had where the layout comes from, when not the format's own. */
  contentType?: string;
  key(ctx: KeyContext): string;
  /**
   * The keys among an output's objects that may hold decisions of [from, to] (ms), listing only what the
   * layout lets narrow (for `sluice query`, `sluice tail` and the console).
   */
  keysBetween(objects: KeyListing, output: string, from: number, to: number): Promise<string[]>;
}

/** What listing keys needs of an output's objects. */
export type KeyListing = Pick<OutputObjects, 'list' | 'children'>;

export interface KeyContext {
  output: string;
  bufferId: string;
  batch: SealedBatch;
  encoding: Encoding;
  /** When the buffer received the batch's first decision (ms). */
  receivedAt: number;
  /** What keys read of the batch's decisions (decision_id, timestamp), when the layout needs them. */
  decisions: KeyFields[];
}

export const KEY_PRESETS = ['hive', 'eopa', 'eopa-per-decision', 'hourly-per-decision', 'outpost'] as const;
export type KeyPreset = (typeof KEY_PRESETS)[number];

export function isKeyPreset(key: string): key is KeyPreset {
  return (KEY_PRESETS as readonly string[]).includes(key);
}

/** The layout of an output's `key`: a preset name or a template. */
export function keyLayout(key: string): KeyLayout {
  switch (key) {
    case 'hive':
      return templateLayout(DEFAULT_KEY_TEMPLATE);
    case 'eopa':
      return EOPA;
    case 'eopa-per-decision':
      return EOPA_PER_DECISION;
    case 'hourly-per-decision':
      return HOURLY_PER_DECISION;
    case 'outpost':
      return OUTPOST;
    default:
      return templateLayout(key);
  }
}

function templateLayout(template: string): KeyLayout {
  return {
    perDecision: false,
    byInstance: false,
    needsDecisions: false,
    key: ({ output, bufferId, batch, encoding }) =>
      renderKey(
        template,
        keyValues({
          output,
          bufferId,
          partition: batch.partition,
          hour: batch.hour,
          first: batch.first,
          last: batch.last,
          ext: extension(encoding),
        }),
      ),
    keysBetween: (objects, output, from, to) => templateKeysBetween(template, objects, output, from, to),
  };
}

/**
 * One prefix per hour (and partition) when the keys start with the time, as hive-style templates do; every
 * key for a template whose keys do not.
 */
async function templateKeysBetween(
  template: string,
  objects: KeyListing,
  output: string,
  from: number,
  to: number,
): Promise<string[]> {
  const head = template.slice(0, template.indexOf('{batch}'));
  const placeholders = [...head.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]!);
  const byHour =
    placeholders.includes('hour') &&
    placeholders.every((p) => ['partition', 'date', 'year', 'month', 'day', 'hour', 'output'].includes(p));
  // a template whose keys do not start with the time cannot be narrowed: every key is a candidate
  if (!byHour || (placeholders.includes('partition') && !template.startsWith('{partition}/'))) return objects.list('');
  // partitions are the first level when the template starts with {partition}/
  const partitions = template.startsWith('{partition}/')
    ? (await objects.children('')).map((p) => p.slice(0, -1))
    : ['default'];
  const keys: string[] = [];
  for (const partition of partitions) {
    for (const hour of hoursBetween(from, to)) {
      const values = keyValues({ output, bufferId: '', partition, hour, first: 0, last: 0, ext: '' });
      keys.push(...(await objects.list(renderKey(head, values))));
    }
  }
  return keys;
}

/** `YYYY-MM-DDTHH` of every UTC hour that [from, to] touches (at most 31 days of them). */
function hoursBetween(from: number, to: number): string[] {
  const hours: string[] = [];
  const start = Math.floor(from / 3_600_000) * 3_600_000;
  for (let t = start; t <= to && hours.length < 24 * 31; t += 3_600_000)
    hours.push(new Date(t).toISOString().slice(0, 13));
  return hours;
}

/** Enterprise OPA's batch names: `.jsonl` for lines, `.json` for an array, `.gz` when compressed; `.parquet`. */
function eopaExtension({ format, compression }: Encoding): string {
  if (format === 'parquet') return 'parquet';
  return (format === 'ndjson' ? 'jsonl' : 'json') + (compression === 'gzip' ? '.gz' : '');
}

const EOPA: KeyLayout = {
  // Enterprise OPA wrote application/json for lines and arrays alike
  perDecision: false,
  byInstance: true,
  needsDecisions: true,
  contentType: 'application/json',
  key: ({ output, bufferId, batch, encoding, receivedAt, decisions }) => {
    // a loop, not Math.min(...spread): a batch may hold a million decisions, far more than a call's arguments
    let first = Infinity;
    let last = -Infinity;
    for (const d of decisions) {
      const s = unixSeconds(d, receivedAt);
      if (s < first) first = s;
      if (s > last) last = s;
    }
    const batchId = `${output}-${bufferId}-${padPosition(batch.first)}-${padPosition(batch.last)}`;
    return `eopa=${instanceName(batch.instance)}/first_ts=${first}/last_ts=${last}/batch_id=${batchId}.${eopaExtension(encoding)}`;
  },
  keysBetween: (objects, _output, from, to) => eopaKeysBetween(objects, from, to),
};

const EOPA_PER_DECISION: KeyLayout = {
  perDecision: true,
  byInstance: true,
  needsDecisions: true,
  key: ({ batch, receivedAt, decisions, output, bufferId }) => {
    const d = decisions[0]!;
    return `eopa=${instanceName(batch.instance)}/ts=${unixSeconds(d, receivedAt)}/decision_id=${decisionId(d, output, bufferId, batch)}.json`;
  },
  keysBetween: (objects, _output, from, to) => eopaKeysBetween(objects, from, to),
};

/** Every key of each OPA instance (`eopa=<id>/`), kept when the times in it meet [from, to]. */
async function eopaKeysBetween(objects: KeyListing, from: number, to: number): Promise<string[]> {
  const keys: string[] = [];
  for (const prefix of await objects.children(''))
    if (prefix.startsWith('eopa=')) keys.push(...(await objects.list(prefix)));
  return keys.filter((k) => eopaKeyOverlaps(k, from, to));
}

/** Whether an eopa key's ts (or first_ts..last_ts) meets [from, to]; keys without times are kept. */
function eopaKeyOverlaps(key: string, from: number, to: number): boolean {
  const ts = /\/ts=(\d+)\//.exec(key);
  if (ts) return Number(ts[1]) * 1000 >= from - 999 && Number(ts[1]) * 1000 <= to;
  const range = /first_ts=(\d+)\/last_ts=(\d+)\//.exec(key);
  if (range) return Number(range[2]) * 1000 >= from - 999 && Number(range[1]) * 1000 <= to;
  return true;
}

const HOURLY_PER_DECISION: KeyLayout = {
  perDecision: true,
  byInstance: false,
  needsDecisions: true,
  key: ({ batch, receivedAt, decisions, output, bufferId }) => {
    const iso = new Date(receivedAt).toISOString();
    return `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}/${decisionId(decisions[0]!, output, bufferId, batch)}.json`;
  },
  // One prefix per hour, `YYYY/MM/DD/HH/`. Keys carry the hour a decision was received, never before its
  // timestamp (an upload late after an outage, the last moments of an hour): decisions of [from, to] may be
  // under any hour from `from` until now.
  keysBetween: async (objects, _output, from, to) =>
    (
      await Promise.all(
        hoursBetween(from, Math.max(to, Date.now())).map((h) =>
          objects.list(`${h.slice(0, 4)}/${h.slice(5, 7)}/${h.slice(8, 10)}/${h.slice(11, 13)}/`),
        ),
      )
    ).flat(),
};

const OUTPOST: KeyLayout = {
  perDecision: true,
  byInstance: false,
  needsDecisions: true,
  key: ({ batch, receivedAt, decisions, output, bufferId }) => {
    const d = decisions[0]!;
    const time = typeof d.timestamp === 'string' ? parseEventTime(d.timestamp) : undefined;
    const rfc3339 = time?.rfc3339Nano ?? new Date(receivedAt).toISOString();
    return `${rfc3339}_${decisionId(d, output, bufferId, batch)}.json`;
  },
  // keys start with the RFC 3339 time: one prefix per hour, `YYYY-MM-DDTHH`
  keysBetween: async (objects, _output, from, to) =>
    (await Promise.all(hoursBetween(from, to).map((h) => objects.list(h)))).flat(),
};

/** labels.id as one key segment: characters that could add levels or climb out (/, ..) become `_`. */
function instanceName(instance: string | null): string {
  if (!instance) return 'unknown';
  const safe = instance.replace(/[^A-Za-z0-9._:-]/g, '_').slice(0, 128);
  return /^\.+$/.test(safe) ? safe.replace(/\./g, '_') : safe;
}

/** The only fields of a decision a key is made of: a batch keeps these, not its parsed decisions. */
export interface KeyFields {
  decision_id?: unknown;
  timestamp?: unknown;
}

function unixSeconds(decision: KeyFields, fallbackMs: number): number {
  const time = typeof decision.timestamp === 'string' ? parseEventTime(decision.timestamp) : undefined;
  return Math.floor((time?.ms ?? fallbackMs) / 1000);
}

/** A decision without a decision_id (OPA always sends one) is named by its position, still unique and stable. */
function decisionId(decision: KeyFields, output: string, bufferId: string, batch: SealedBatch): string {
  const id = decision.decision_id;
  return typeof id === 'string' && /^[A-Za-z0-9._:-]{1,200}$/.test(id)
    ? id
    : `${output}-${bufferId}-${padPosition(batch.first)}`;
}
