import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { NewChunk } from '../buffer/types.js';
import type { Config } from '../config/schema.js';
import { HttpError } from '../http/http-error.js';
import type { EventPublisher, PublishInput } from './event-publisher.js';
import { parseEventTime } from '../time/event-time.js';
import { bearerToken, BearerTokens } from '../http/bearer-token.js';

/** The topic of decisions delivered to tenant destinations. */
export const DECISIONS_TOPIC = 'decisions';

/**
 * Decisions from `/logs` that also go to a tenant's destinations (`ingest.tenants`): chosen by the
 * partition they were posted to, or the ingest token they were sent with. Each decision becomes an event of
 * topic `decisions`: id = decision_id, time = timestamp, data = the decision as sent.
 */
export class DecisionEvents {
  private readonly byPartition = new Map<string, string>();
  /** Ingest tokens that name a tenant; the first mapping of a token wins. */
  private readonly byToken: BearerTokens<string>;
  private readonly warned = new Set<string>();

  constructor(
    config: Config,
    private readonly publisher: EventPublisher,
    private readonly log: FastifyBaseLogger,
  ) {
    const byToken: Array<[string, string]> = [];
    for (const m of config.ingest.tenants) {
      if (m.partition) this.byPartition.set(m.partition, m.tenant);
      if (m.token) byToken.push([m.token, m.tenant]);
    }
    this.byToken = new BearerTokens(byToken);
  }

  get enabled(): boolean {
    return this.byPartition.size > 0 || this.byToken.size > 0;
  }

  tenantOf(request: FastifyRequest, partition: string): string | undefined {
    return this.byPartition.get(partition) || this.byToken.find(bearerToken(request));
  }

  /**
   * Publishes the decisions of the chunks as events of the tenant; resolves once they are durable. All or
   * none: a 429 (api.max_pending_deliveries) stores none of them. The chunks carry each decision's id and
   * timestamp, read in the decode threads, so nothing is parsed here.
   */
  async publish(tenant: string, partition: string, chunks: NewChunk[]): Promise<void> {
    const inputs: Array<Omit<PublishInput, 'tenant_id'>> = [];
    for (const chunk of chunks) {
      const fields = chunk.events;
      if (!fields) throw new Error('decisions for a tenant were decoded without their event fields');
      // the NDJSON as decoded (the stored payload may be compressed)
      const text = chunk.text ?? chunk.payload;
      let start = 0;
      for (let i = 0; i < chunk.count; i++) {
        const end = text.indexOf(0x0a, start);
        const { id, timestamp } = fields[i]!;
        const time = timestamp !== undefined && parseEventTime(timestamp) ? timestamp : undefined;
        inputs.push({
          id,
          topic: DECISIONS_TOPIC,
          time,
          metadata: { partition },
          data: text.toString('utf8', start, end),
        });
        start = end + 1;
      }
    }
    try {
      await this.publisher.publishAll(tenant, inputs);
    } catch (err) {
      if (!(err instanceof HttpError && err.statusCode === 404)) throw err;
      // The decisions are in the buffer for the outputs; the tenant is a configuration mistake to report once.
      if (!this.warned.has(tenant)) {
        this.warned.add(tenant);
        this.log.warn(
          { tenant, partition },
          'ingest.tenants names a tenant that does not exist: its decisions go to the outputs only',
        );
      }
    }
  }
}
