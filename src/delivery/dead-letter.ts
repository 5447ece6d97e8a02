import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';

export type DeadLetterReason = 'rule_failed' | 'corrupt_chunk' | 'too_large';

/**
 * Decisions an output cannot write as data, set aside on local disk instead of stopping the output.
 *
 * Three things end up here: a decision on which the output's rules failed (writing it unmasked could leak what
 * the mask exists to hide, so it is not written to the output at all), a buffer chunk whose checksum does
 * not match (its bytes are not what was acknowledged, so they are not data), and a decision an http or service
 * output's receiver refuses as too large even sent alone (413: no retry can deliver it). All stay in
 * `data_dir/dead-letter/<output>.ndjson`, one JSON line per incident, fsync'd before the output moves on, next
 * to the buffer they came from: an operator can inspect, fix and replay them (`sluice send`). After a crash an
 * incident may be written twice; it is never lost.
 */
export class DeadLetter {
  private readonly counts = new Map<string, number>();

  constructor(readonly dir: string) {}

  fileOf(output: string): string {
    return path.join(this.dir, `${output}.ndjson`);
  }

  /** Decisions set aside by an output since the start. */
  count(output: string): number {
    return this.counts.get(output) ?? 0;
  }

  /**
   * Records one incident durably: `events` decisions within positions first..last (a rule's failure names its
   * batch's range). `decision` is a decision's exact text (kept as a JSON string: it may not even be valid
   * JSON, which may be why the rules failed); `payload` raw bytes that may be anything (kept as base64).
   */
  write(
    output: string,
    entry: {
      reason: DeadLetterReason;
      first: number;
      last: number;
      events: number;
      error: string;
      decision?: string;
      payload?: Buffer;
    },
  ): void {
    const line = `${JSON.stringify({
      at: new Date().toISOString(),
      output,
      reason: entry.reason,
      first_position: entry.first,
      last_position: entry.last,
      events: entry.events,
      error: entry.error,
      ...(entry.decision !== undefined ? { decision_text: entry.decision } : {}),
      ...(entry.payload ? { payload_base64: entry.payload.toString('base64') } : {}),
    })}\n`;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const fd = openSync(this.fileOf(output), 'a', 0o600);
    try {
      writeSync(fd, line);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.counts.set(output, this.count(output) + entry.events);
  }
}
