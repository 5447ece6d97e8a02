/**
 * Event times as Go prints them. Outpost's object keys use Go's RFC3339Nano: UTC here, the fraction with
 * up to nine digits and no trailing zeros (none at all for a whole second). JavaScript dates hold only
 * milliseconds, so the fraction is carried as text to keep a sender's nanoseconds.
 */
export interface EventTime {
  /** `2026-05-01T12:00:00.123456789Z` */
  rfc3339Nano: string;
  /** Milliseconds since the epoch (the fraction truncated). */
  ms: number;
}

const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses an RFC 3339 time; undefined when it is not one. */
export function parseEventTime(text: string): EventTime | undefined {
  const match = RFC3339.exec(text);
  if (!match) return undefined;
  const [, date, clock, fraction = '', zone] = match;
  const wholeSecond = Date.parse(`${date}T${clock}${zone!.toUpperCase()}`);
  if (Number.isNaN(wholeSecond)) return undefined;
  const nanos = fraction.padEnd(9, '0');
  return { rfc3339Nano: format(wholeSecond, nanos), ms: wholeSecond + Number(nanos.slice(0, 3)) };
}

export function eventTimeOf(ms: number): EventTime {
  const wholeSecond = Math.floor(ms / 1000) * 1000;
  return {
    rfc3339Nano: format(
      wholeSecond,
      String(ms - wholeSecond)
        .padStart(3, '0')
        .padEnd(9, '0'),
    ),
    ms,
  };
}

function format(wholeSecondMs: number, nanos: string): string {
  const trimmed = nanos.replace(/0+$/, '');
  return `${new Date(wholeSecondMs).toISOString().slice(0, 19)}${trimmed ? `.${trimmed}` : ''}Z`;
}

/** The `time` of a key template's context: zero-padded strings, all in UTC. */
export function timeFields(time: EventTime): Record<string, string> {
  const iso = new Date(time.ms).toISOString();
  return {
    year: iso.slice(0, 4),
    month: iso.slice(5, 7),
    day: iso.slice(8, 10),
    hour: iso.slice(11, 13),
    minute: iso.slice(14, 16),
    second: iso.slice(17, 19),
    date: iso.slice(0, 10),
    datetime: iso.slice(0, 19),
    unix: String(Math.floor(time.ms / 1000)),
    rfc3339: `${iso.slice(0, 19)}Z`,
    rfc3339_nano: time.rfc3339Nano,
  };
}
