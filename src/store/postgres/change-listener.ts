import pg from 'pg';

/** The channel the tables' triggers notify on (see migration 001, notify_tenant_change). */
const CHANNEL = 'sluice_changes';
/**
 * The channel a group of publishes notifies on as it commits new deliveries (`{schema, node}`), so that every
 * node's dispatcher looks for due work at once rather than at its next idle look.
 */
export const PUBLISHED_CHANNEL = 'sluice_published';
/** Wait before connecting again after the listening connection broke. */
const RECONNECT_MS = 1000;

/**
 * Hears of changes to tenants and destinations made by any node: one connection of its own that LISTENs to
 * the triggers' notifications, and tells `changed(tenantId)` for those of its schema; and of publishes on
 * other nodes (PUBLISHED_CHANNEL), told by `published()`. While it is not
 * connected, changes may go unheard: `connected(false)` says so (the caches then read the database every
 * time), and `connected(true)` once it listens again (the caches start empty).
 */
export class ChangeListener {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly schema: string,
    private readonly changed: (tenantId: string) => void,
    private readonly connected: (listening: boolean) => void,
    private readonly published: { nodeId: string; heard: () => void } = { nodeId: '', heard: () => {} },
  ) {}

  /** Resolves once listening (or rejects when the database cannot be reached: a node does not start without it). */
  async start(): Promise<void> {
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client(this.config);
    client.on('notification', (message) => {
      if ((message.channel !== CHANNEL && message.channel !== PUBLISHED_CHANNEL) || !message.payload) return;
      let change: { schema?: unknown; tenant?: unknown; node?: unknown };
      try {
        change = JSON.parse(message.payload) as typeof change;
      } catch {
        return;
      }
      if (change.schema !== this.schema) return;
      if (message.channel === PUBLISHED_CHANNEL) {
        // this node's own publishes woke its dispatcher as they committed
        if (change.node !== this.published.nodeId) this.published.heard();
      } else if (typeof change.tenant === 'string') this.changed(change.tenant);
    });
    const broke = () => {
      if (this.client !== client) return;
      this.client = undefined;
      this.connected(false);
      client.end().catch(() => {});
      this.retryLater();
    };
    client.on('error', broke);
    client.on('end', broke);
    await client.connect();
    try {
      await client.query(`LISTEN ${CHANNEL}`);
      await client.query(`LISTEN ${PUBLISHED_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.stopped) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.connected(true);
  }

  private retryLater(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.connect().catch(() => this.retryLater());
    }, RECONNECT_MS);
    this.timer.unref();
  }
}
