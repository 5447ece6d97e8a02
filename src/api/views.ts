import type { Delivery, Destination, Store, StoredEvent, Tenant } from '../store/types.js';
import { DESTINATION_TYPES } from '../sinks/destination-types.js';
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
export function eventView(store: Store, e: StoredEvent, withDeliveries = false) {
  const deliveries = store.eventDeliveries(e.seq);
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
    destination_ids: [...new Set(deliveries.map((d) => d.destination_id))],
    ...(withDeliveries ? {
      deliveries: deliveries.map((d) => ({ destination_id: d.destination_id, status: d.status, attempts: d.attempts, object_key: d.object_key })),
    } : {}),
  };
}
