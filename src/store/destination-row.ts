import type { CredentialsCipher } from './credentials-cipher.js';
import type { Destination, StringMap } from './types.js';

/**
 * A destination as both stores keep it: its lists and maps as JSON text, its credentials encrypted. The
 * stores differ only in how they keep `batched` (a flag of their own queries), which a Destination leaves out.
 */
export interface DestinationColumns {
  id: string;
  tenant_id: string;
  type: string;
  topics: string;
  config: string;
  credentials: string;
  delivery_metadata: string;
  metadata: string;
  filter: string | null;
  disabled_at: string | null;
  created_at: string;
  updated_at: string;
}

/** The destination a stored row holds, its credentials decrypted (in memory only). */
export function destinationOfRow(row: DestinationColumns, cipher: CredentialsCipher): Destination {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    type: row.type,
    topics: JSON.parse(row.topics) as string[],
    config: JSON.parse(row.config) as Record<string, unknown>,
    credentials: cipher.decrypt(row.credentials),
    delivery_metadata: JSON.parse(row.delivery_metadata) as StringMap,
    metadata: JSON.parse(row.metadata) as StringMap,
    filter: JSON.parse(row.filter ?? '{}') as Record<string, unknown>,
    disabled_at: row.disabled_at,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}
