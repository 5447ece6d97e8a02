/**
 * RFC 3339 date-times as TIMESTAMP(MICROS) values (src/formats/rfc3339.ts): any instant, written in any
 * offset with up to nine fraction digits, gives its microseconds since the epoch (digits past the sixth cut);
 * text the grammar does not allow, or a date the calendar does not have, gives none.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { rfc3339Micros } from '../../src/formats/rfc3339.js';

test('an instant in any offset and precision gives its microseconds', () => {
  fc.assert(
    fc.property(
      fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-30T00:00:00Z'), noInvalidDate: true }),
      fc.stringMatching(/^\d{0,6}$/),
      fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }),
      fc.boolean(),
      (date, moreDigits, offset, lower) => {
        const local = new Date(date.getTime() + offset * 60_000).toISOString().slice(0, 23);
        const abs = Math.abs(offset);
        const zone =
          offset === 0 && !lower
            ? 'Z'
            : `${offset < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
        let text = `${local}${moreDigits}${zone}`;
        if (lower) text = text.replace('T', 't');
        const micros = BigInt(date.getTime()) * 1000n + BigInt(moreDigits.slice(0, 3).padEnd(3, '0'));
        assert.equal(rfc3339Micros(text), micros, text);
      },
    ),
    { numRuns: 500 },
  );
});

test('examples, before 1970 and at the edges of the calendar', () => {
  assert.equal(rfc3339Micros('1970-01-01T00:00:00Z'), 0n);
  assert.equal(rfc3339Micros('1969-12-31T23:59:59.999999Z'), -1n);
  assert.equal(rfc3339Micros('1969-12-31T23:59:59.9999999Z'), -1n);
  assert.equal(rfc3339Micros('2024-02-29T00:00:00z'), BigInt(Date.parse('2024-02-29T00:00:00Z')) * 1000n);
  assert.equal(rfc3339Micros('2000-02-29T00:00:00Z'), BigInt(Date.parse('2000-02-29T00:00:00Z')) * 1000n);
  assert.equal(
    rfc3339Micros('2026-12-01T10:00:00.123456789Z'),
    BigInt(Date.parse('2026-12-01T10:00:00.123Z')) * 1000n + 456n,
  );
  assert.equal(rfc3339Micros('2026-12-01T00:30:00+01:00'), BigInt(Date.parse('2026-11-30T23:30:00Z')) * 1000n);
  assert.equal(rfc3339Micros('0000-01-01T00:00:00Z'), -62_167_219_200_000_000n);
  assert.equal(rfc3339Micros('9999-12-31T23:59:59.999999Z'), 253_402_300_799_999_999n);
});

test('text that is not an RFC 3339 date-time gives none', () => {
  for (const text of [
    '',
    'now',
    '2026-12-01',
    '2026-12-01T10:00:00',
    '2026-12-01 10:00:00Z',
    '2026-12-01T10:00Z',
    '2026-12-01T10:00:00.Z',
    '2026-13-01T00:00:00Z',
    '2026-00-01T00:00:00Z',
    '2026-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-12-01T24:00:00Z',
    '2026-12-01T10:60:00Z',
    '2026-12-01T10:00:60Z',
    '2026-12-01T10:00:00+24:00',
    '2026-12-01T10:00:00+01:60',
    '2026-12-01T10:00:00+0100',
    '+2026-12-01T10:00:00Z',
    '20261-12-01T10:00:00Z',
    ' 2026-12-01T10:00:00Z',
    '2026-12-01T10:00:00Z ',
    '２０２６-12-01T10:00:00Z',
  ])
    assert.equal(rfc3339Micros(text), undefined, text);
});
