import type { Logger } from 'pino';
import { parseEventTime, timeFields } from '../../time/event-time.js';
import type { Destination, StoredEvent, StringMap } from '../../store/types.js';
import type { EventObjectBudget, EventObjects } from '../destination-types.js';
import { md5, type StoredObject } from '../types.js';
import { checkedSegments, KeyTemplateError, type KeyTemplateTask } from './key-template.js';
import { KEY_TEMPLATE_LIMITS, KeyTemplatePool } from './key-template-pool.js';

export { KeyTemplateError } from './key-template.js';

/**
 * An aws_s3 destination's per-event objects: the key is the default one or its key_template's, evaluated in a
 * process of the pool (never on the event loop) within its time and memory budget; the body is the event's
 * data, with the S3 user metadata of objectMetadata.
 */
export class S3EventObjects implements EventObjects {
  /** Tenants choose key templates, whose work is unbounded: they are evaluated in processes, under a budget. */
  private readonly pool: KeyTemplatePool;

  constructor(
    log: Logger,
    budget: EventObjectBudget,
    private readonly templateOf: (destination: Destination) => string | undefined,
  ) {
    this.pool = new KeyTemplatePool(log, {
      ...KEY_TEMPLATE_LIMITS,
      timeMs: budget.timeMs,
      maxOldSpaceMb: Math.round(budget.maxMemoryBytes / 2 ** 20),
    });
  }

  async key(event: StoredEvent, destination: Destination): Promise<string> {
    const template = this.templateOf(destination);
    if (!template) return defaultObjectKey(event);
    return this.pool.evaluate(keyTemplateTask(event, objectMetadata(event, destination), template));
  }

  keyFailureCode(err: unknown): string | undefined {
    return err instanceof KeyTemplateError ? 'key_template' : undefined;
  }

  object(event: StoredEvent, destination: Destination, key: string): StoredObject {
    return eventObject(event, objectMetadata(event, destination), key);
  }

  /** Evaluations still running end, rejected. */
  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * The S3 user metadata of an event's object: the system's `event-id`, `topic`, `timestamp` (Unix seconds),
 * then the destination's delivery_metadata, then the event's own metadata; later ones win.
 */
export function objectMetadata(event: StoredEvent, destination: Destination): StringMap {
  return {
    'event-id': event.id,
    topic: event.topic,
    timestamp: String(Math.floor(event.time_ms / 1000)),
    ...destination.delivery_metadata,
    ...event.metadata,
  };
}

/** The default object key: `<RFC3339 nano time>_<event id>.json`. */
export function defaultObjectKey(event: StoredEvent): string {
  return checkedSegments(`${eventTime(event).rfc3339Nano}_${event.id}.json`, 'the default key (from the event id)');
}

/**
 * What the destination's JMESPath key_template is evaluated over for this event: `data`, `metadata` and `time`.
 * The evaluation itself runs in a worker (KeyTemplatePool), never here.
 */
export function keyTemplateTask(event: StoredEvent, metadata: StringMap, template: string): KeyTemplateTask {
  return { template, data: event.data, metadata, time: timeFields(eventTime(event)) };
}

function eventTime(event: StoredEvent) {
  return parseEventTime(event.time) ?? { rfc3339Nano: event.time, ms: event.time_ms };
}

/** One event as one object: the body is the event's data. */
export function eventObject(event: StoredEvent, metadata: StringMap, key: string): StoredObject {
  const body = Buffer.from(event.data);
  return { key, body, contentType: 'application/json', contentMD5: md5(body), metadata };
}
