import type { SealedBatch } from '../buffer/types.js';
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
  /** The Content-Type its objects had where the layout comes from, when not the format's own. */
  contentType?: string;
  key(ctx: KeyContext): string;
}

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
    case 'hive': return templateLayout(DEFAULT_KEY_TEMPLATE);
    case 'eopa': return EOPA;
    case 'eopa-per-decision': return EOPA_PER_DECISION;
    case 'hourly-per-decision': return HOURLY_PER_DECISION;
    case 'outpost': return OUTPOST;
    default: return templateLayout(key);
  }
}

function templateLayout(template: string): KeyLayout {
  return {
    perDecision: false, byInstance: false, needsDecisions: false,
    key: ({ output, bufferId, batch, encoding }) => renderKey(template, keyValues({
      output, bufferId, partition: batch.partition, hour: batch.hour, first: batch.first, last: batch.last, ext: extension(encoding),
    })),
  };
}

/** Enterprise OPA's batch names: `.jsonl` for lines, `.json` for an array, `.gz` when compressed. */
function eopaExtension({ format, compression }: Encoding): string {
  return (format === 'ndjson' ? 'jsonl' : 'json') + (compression === 'gzip' ? '.gz' : '');
}

const EOPA: KeyLayout = {
  // Enterprise OPA wrote application/json for lines and arrays alike
  perDecision: false, byInstance: true, needsDecisions: true, contentType: 'application/json',
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
};

const EOPA_PER_DECISION: KeyLayout = {
  perDecision: true, byInstance: true, needsDecisions: true,
  key: ({ batch, receivedAt, decisions, output, bufferId }) => {
    const d = decisions[0]!;
    return `eopa=${instanceName(batch.instance)}/ts=${unixSeconds(d, receivedAt)}/decision_id=${decisionId(d, output, bufferId, batch)}.json`;
  },
};

const HOURLY_PER_DECISION: KeyLayout = {
  perDecision: true, byInstance: false, needsDecisions: true,
  key: ({ batch, receivedAt, decisions, output, bufferId }) => {
    const iso = new Date(receivedAt).toISOString();
    return `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}/${decisionId(decisions[0]!, output, bufferId, batch)}.json`;
  },
};

const OUTPOST: KeyLayout = {
  perDecision: true, byInstance: false, needsDecisions: true,
  key: ({ batch, receivedAt, decisions, output, bufferId }) => {
    const d = decisions[0]!;
    const time = typeof d.timestamp === 'string' ? parseEventTime(d.timestamp) : undefined;
    const rfc3339 = time?.rfc3339Nano ?? new Date(receivedAt).toISOString();
    return `${rfc3339}_${decisionId(d, output, bufferId, batch)}.json`;
  },
};

/** labels.id as one key segment: characters that could add levels or climb out (/, ..) become `_`. */
function instanceName(instance: string | null): string {
  if (!instance) return 'unknown';
  const safe = instance.replace(/[^A-Za-z0-9._:-]/g, '_').slice(0, 128);
  return /^\.+$/.test(safe) ? safe.replace(/\./g, '_') : safe;
}

/** The only fields of a decision a key is made of: a batch keeps these, not its parsed decisions. */
export interface KeyFields { decision_id?: unknown; timestamp?: unknown }

function unixSeconds(decision: KeyFields, fallbackMs: number): number {
  const time = typeof decision.timestamp === 'string' ? parseEventTime(decision.timestamp) : undefined;
  return Math.floor((time?.ms ?? fallbackMs) / 1000);
}

/** A decision without a decision_id (OPA always sends one) is named by its position, still unique and stable. */
function decisionId(decision: KeyFields, output: string, bufferId: string, batch: SealedBatch): string {
  const id = decision.decision_id;
  return typeof id === 'string' && /^[A-Za-z0-9._:-]{1,200}$/.test(id) ? id : `${output}-${bufferId}-${padPosition(batch.first)}`;
}
