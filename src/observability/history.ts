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
 */
export class History {
  private readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly take: () => Omit<Sample, 'at'>,
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

  /** The samples, plus one taken now so the charts end at the present. */
  read(): Sample[] {
    return [...this.samples, { at: Date.now(), ...this.take() }];
  }

  private record(): void {
    this.samples.push({ at: Date.now(), ...this.take() });
    if (this.samples.length > this.keep) this.samples.shift();
  }
}
