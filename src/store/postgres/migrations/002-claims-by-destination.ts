/**
 * Version 2: the pending deliveries claimed, by destination and node. A claim counts a destination's live
 * claims over all nodes and finds this node's own (PgDeliveries.claim) under the destination's advisory lock,
 * which every node's claims of it wait for: through deliveries_by_tenant_destination that read every pending
 * delivery of the destination, its whole backlog, each time; here it reads its claims alone.
 */
export const MIGRATION_002 = `
CREATE INDEX deliveries_claimed ON deliveries (tenant_id, destination_id, claimed_by)
  WHERE status = 'pending' AND claimed_by IS NOT NULL;
`;
