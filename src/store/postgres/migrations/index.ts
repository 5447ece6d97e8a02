import { MIGRATION_001 } from './001-initial.js';
import { MIGRATION_002 } from './002-claims-by-destination.js';

/** A numbered change to the schema; each is applied once, in order, and recorded in sluice_migrations. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Every migration this version knows, oldest first. A new one is added at the end with the next number and
 * never edited once released: databases that applied it keep what it did.
 */
export const MIGRATIONS: Migration[] = [
  { version: 1, name: 'initial', sql: MIGRATION_001 },
  { version: 2, name: 'claims by destination', sql: MIGRATION_002 },
];
