/**
 * A log line that may repeat thousands of times a second (every refused request, every odd decision) is
 * written at most once per interval per key, with the number of lines it stood for since the last one.
 */
interface LevelLogger {
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(private readonly log: LevelLogger, private readonly intervalMs = 60_000, private readonly now: () => number = Date.now) {}

  warn(key: string, fields: object, message: string): void {
    this.write('warn', key, fields, message);
  }

  error(key: string, fields: object, message: string): void {
    this.write('error', key, fields, message);
  }

  private write(level: 'warn' | 'error', key: string, fields: object, message: string): void {
    const now = this.now();
    const seen = this.last.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    this.last.set(key, { at: now, suppressed: 0 });
    this.log[level](seen && seen.suppressed > 0 ? { ...fields, suppressed: seen.suppressed } : fields, message);
  }
}
