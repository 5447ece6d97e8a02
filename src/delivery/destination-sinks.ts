import type { Logger } from 'pino';
import type { DestinationType, EventObjectBudget, EventObjects } from '../sinks/destination-types.js';
import type { EndpointGuard } from '../sinks/endpoint-guard.js';
import { DESTINATION_TYPES } from '../sinks/registry.js';
import type { Sink } from '../sinks/types.js';
import { destinationKey, type Destination } from '../store/types.js';

/**
 * What delivery to tenant destinations needs of their types, found through the registry (sinks/registry.ts)
 * and never by a type's name: a new destination type is its folder and its line there.
 *
 * A destination's sink is made once and made anew when the destination changes (its updated_at), so both
 * per-event and batched delivery write through the same client. Each type's per-event objects (which may
 * hold processes, such as key template evaluation) are made once, here, and closed with the rest.
 */
export class DestinationSinks {
  private readonly sinks = new Map<string, { version: string; sink: Sink }>();
  private readonly eventObjects = new Map<string, EventObjects>();

  constructor(
    log: Logger,
    private readonly opts: { requestTimeout: number; guard: EndpointGuard },
    budget: EventObjectBudget,
  ) {
    for (const [name, type] of DESTINATION_TYPES) this.eventObjects.set(name, type.eventObjects(log, budget));
  }

  /** The type of a saved destination; the API saves only the types the registry lists. */
  typeOf(destination: Destination): DestinationType {
    const type = DESTINATION_TYPES.get(destination.type);
    if (!type) throw new Error(`destination ${destination.id} has type ${destination.type}, which no type module has`);
    return type;
  }

  /** How the destination's events become objects, one per event. */
  eventObjectsOf(destination: Destination): EventObjects {
    this.typeOf(destination);
    return this.eventObjects.get(destination.type)!;
  }

  /** The sink of a destination, made anew when the destination changes. */
  sinkOf(destination: Destination): Sink {
    const key = destinationKey(destination.tenant_id, destination.id);
    const cached = this.sinks.get(key);
    if (cached && cached.version === destination.updated_at) return cached.sink;
    cached?.sink.close();
    const sink = this.typeOf(destination).createSink(destination, this.opts);
    this.sinks.set(key, { version: destination.updated_at, sink });
    return sink;
  }

  /** Closes every sink; evaluations of keys still running end, rejected. */
  async close(): Promise<void> {
    for (const { sink } of this.sinks.values()) sink.close();
    this.sinks.clear();
    await Promise.all([...this.eventObjects.values()].map((o) => o.close()));
  }
}
