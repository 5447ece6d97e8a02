/**
 * A log line that may repeat thousands of times a second (every refused request, every odd decision; OPA
 * retries a refused chunk for ever) is written at most once per interval per key, with the number of lines it
 * stood for since the last one (`suppressed`). Keys are the caller's choice (a reason, an output name); at most
 * `maxKeys` are remembered, the least recently logged going first, so memory stays bounded whatever the keys.
 */
interface LevelLogger {
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: LevelLogger,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 1_000,
  ) {}

  /** Logs at warn unless `key` was logged less than the interval ago; true when it logged. */
  warn(key: string, fields: object, message: string): boolean {
    return this.write('warn', key, fields, message);
  }

  error(key: string, fields: object, message: string): boolean {
    return this.write('error', key, fields, message);
  }

  private write(level: 'warn' | 'error', key: string, fields: object, message: string): boolean {
    const now = this.now();
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return false;
    }
    // deleted and set again, so the Map's order is the order of last logging (its first key is the oldest)
    this.last.delete(key);
    this.last.set(key, { at: now, suppressed: 0 });
    if (this.last.size > this.maxKeys) this.last.delete(this.last.keys().next().value!);
    this.log[level](seen && seen.suppressed > 0 ? { ...fields, suppressed: seen.suppressed } : fields, message);
    return true;
  }
}
