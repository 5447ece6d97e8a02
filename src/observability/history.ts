/** One sample of what the console charts: running totals and levels at a moment. */
export interface Sample {
  at: number;
  ingested: number;
  delivered: number;
  bufferBytes: number;
  pendingDeliveries: number;
}

/**
 * The last hour of samples (one every 10 s), kept in memory for the operator console's charts: rates are
 * differences of the running totals. Nothing is kept across restarts; Prometheus is for longer history.
 * A sample is taken asynchronously (the store's figures may come over the network); one that fails (the
 * store unreachable) is left out: a gap in the charts.
 */
export class History {
  private readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly take: () => Promise<Omit<Sample, 'at'>>,
    private readonly everyMs = 10_000,
    private readonly keep = 360,
  ) {}

  start(): void {
    this.record();
    this.timer = setInterval(() => this.record(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The samples, plus one taken now so the charts end at the present (when it can be taken). */
  async read(): Promise<Sample[]> {
    const at = Date.now();
    const now = await this.take().catch(() => undefined);
    return now ? [...this.samples, { at, ...now }] : [...this.samples];
  }

  private record(): void {
    const at = Date.now();
    this.take().then(
      (sample) => {
        this.samples.push({ at, ...sample });
        if (this.samples.length > this.keep) this.samples.shift();
      },
      () => {},
    );
  }
}
