import ms from 'ms';

/** Binary (KiB) and decimal (KB) size units; a bare number is a count of bytes. */
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
};

/** Parses `64MiB`, `1GiB`, `512KB`, `100` (bytes). Returns undefined when the text is not a size. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!match) return undefined;
  const unit = SIZE_UNITS[(match[2] || 'b').toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(match[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Parses `10s`, `500ms`, `5m`, `1h`; a bare number is milliseconds. Returns undefined when invalid. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (!/^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d)?\s*$/.test(value)) return undefined;
  const millis = ms(value.trim() as ms.StringValue);
  return typeof millis === 'number' && Number.isFinite(millis) && millis >= 0 ? millis : undefined;
}
