import type { Attempt, Delivery, Destination, Store, StoredEvent, Tenant } from '../store/types.js';
import { DESTINATION_TYPES } from '../sinks/registry.js';
import { RawJson } from '../json/raw-json.js';

/** What a masked credential looks like; sending it back in a PATCH keeps the stored value. */
export function maskCredential(field: string, value: string): string {
  // An access key id is shown by its first characters, so one can tell keys apart; secrets not at all.
  return field === 'key' && value.length > 8 ? `${value.slice(0, 4)}****` : '****';
}

export function tenantView(tenant: Tenant, destinations: Destination[]) {
  const topics = [...new Set(destinations.flatMap((d) => d.topics))].sort();
  return {
    id: tenant.id,
    destinations_count: destinations.length,
    topics,
    metadata: tenant.metadata,
    created_at: tenant.created_at,
    updated_at: tenant.updated_at,
  };
}

export function destinationView(d: Destination) {
  return {
    id: d.id,
    type: d.type,
    topics: d.topics,
    config: d.config,
    credentials: Object.fromEntries(Object.entries(d.credentials).map(([k, v]) => [k, maskCredential(k, v)])),
    delivery_metadata: d.delivery_metadata,
    metadata: d.metadata,
    filter: d.filter,
    disabled_at: d.disabled_at,
    created_at: d.created_at,
    updated_at: d.updated_at,
    target: DESTINATION_TYPES.get(d.type)?.target(d) ?? null,
  };
}

/** An event's state over its deliveries: pending while any is, failed if any failed, else success. */
function eventStatus(deliveries: Delivery[]): 'pending' | 'success' | 'failed' | null {
  if (deliveries.length === 0) return null;
  if (deliveries.some((d) => d.status === 'pending')) return 'pending';
  return deliveries.some((d) => d.status === 'failed') ? 'failed' : 'success';
}

/**
 * An event as the API shows it. `data` is the stored text as it is (a RawJson: write the answer with
 * stringifyWithRaw), so the numbers and key order a publisher sent come back unchanged, and no depth of
 * data can overflow a serializer.
 */
export async function eventView(store: Store, e: StoredEvent, withDeliveries = false) {
  const deliveries = await store.eventDeliveries(e.seq);
  const destinationIds = [...new Set(deliveries.map((d) => d.destination_id))];
  return {
    id: e.id,
    tenant_id: e.tenant_id,
    topic: e.topic,
    time: e.time,
    eligible_for_retry: e.eligible_for_retry,
    metadata: e.metadata,
    data: new RawJson(e.data),
    received_at: e.received_at,
    status: eventStatus(deliveries),
    // Outpost's name for the destinations it was routed to; destination_ids is what earlier versions answered
    matched_destination_ids: destinationIds,
    destination_ids: destinationIds,
    ...(withDeliveries
      ? {
          deliveries: deliveries.map((d) => ({
            destination_id: d.destination_id,
            status: d.status,
            attempts: d.attempts,
            object_key: d.object_key,
          })),
        }
      : {}),
  };
}

/** What `include` adds to an attempt: its event (summary, or with data) and its destination. */
export interface AttemptIncludes {
  event?: 'summary' | 'data';
  destination?: boolean;
}

/**
 * An attempt as the API shows it. Fields Sluice has no value for are left out rather than null (a batch
 * attempt has no event_id; an attempt that never reached the store no code), as Outpost's clients expect.
 * With includes it embeds its event and destination; `data` is the stored text (write it with stringifyWithRaw).
 */
export async function attemptView(store: Store, a: Attempt, includes: AttemptIncludes = {}) {
  const { event_id: eventId, code, ...rest } = a;
  const view: Record<string, unknown> = {
    ...rest,
    ...(eventId !== null ? { event_id: eventId } : {}),
    ...(code !== null ? { code } : {}),
  };
  if (includes.event) {
    const event = eventId === null ? undefined : await store.getEvent(a.tenant_id, eventId);
    view.event =
      event === undefined
        ? null
        : {
            id: event.id,
            tenant_id: event.tenant_id,
            destination_id: a.destination_id,
            topic: event.topic,
            time: event.time,
            eligible_for_retry: event.eligible_for_retry,
            metadata: event.metadata,
            ...(includes.event === 'data' ? { data: new RawJson(event.data) } : {}),
          };
  }
  if (includes.destination) {
    const destination = await store.getDestination(a.tenant_id, a.destination_id);
    if (destination) view.destination = destinationView(destination);
  }
  return view;
}
