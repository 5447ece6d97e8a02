/**
 * Each key layout lists the keys of a time range itself (what `sluice query`, `tail` and the console read):
 * objects written with the layout's own keys, at three hours and in two partitions, and the range of one
 * hour gives that hour's keys only, or every key where the layout cannot narrow.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { keyLayout, type KeyListing } from '../../src/delivery/key-layouts.js';

/** Keys in memory, listed as S3 lists them (by prefix, and one level below a prefix). */
function memoryObjects(keys: string[]): KeyListing & { listed: string[] } {
  const listed: string[] = [];
  return {
    listed,
    list: async (prefix) => {
      listed.push(prefix);
      return keys.filter((k) => k.startsWith(prefix)).sort();
    },
    children: async (prefix) => {
      const below = keys
        .filter((k) => k.startsWith(prefix))
        .map((k) => k.slice(prefix.length))
        .filter((rest) => rest.includes('/'));
      return [...new Set(below.map((rest) => `${prefix}${rest.slice(0, rest.indexOf('/') + 1)}`))].sort();
    },
  };
}

const OUTPUT = 'archive';
const HOURS = ['10', '12', '14'];
const PARTITIONS = ['default', 'p2'];

/** The key one decision of `hour` (and partition) gets from the layout: the objects of the test. */
function keyOf(key: string, hour: string, partition: string, position: number): string {
  const layout = keyLayout(key);
  const timestamp = `2026-05-01T${hour}:34:56.789012345Z`;
  const decision = { decision_id: `d-${hour}-${partition}`, timestamp };
  const batch = {
    output: OUTPUT,
    partition,
    hour: `2026-05-01T${hour}`,
    instance: layout.byInstance ? `opa-${partition}` : null,
    first: position,
    last: position,
    count: 1,
    bytes: 100,
  };
  return layout.key({
    output: OUTPUT,
    bufferId: '0a1b2c3d',
    batch,
    encoding: { format: 'ndjson', compression: 'gzip' },
    receivedAt: Date.parse(timestamp),
    decisions: [decision],
  });
}

function written(key: string): Map<string, string[]> {
  const byHour = new Map<string, string[]>();
  let position = 1;
  for (const hour of HOURS)
    byHour.set(
      hour,
      PARTITIONS.map((p) => keyOf(key, hour, p, position++)),
    );
  return byHour;
}

const NOON = Date.parse('2026-05-01T12:00:00Z');
const BEFORE_ONE = Date.parse('2026-05-01T12:59:59.999Z');

describe('keysBetween: the keys of a time range, by each layout', () => {
  const narrowing = [
    'hive',
    'eopa',
    'eopa-per-decision',
    'outpost',
    '{year}/{month}/{day}/{hour}/{output}-{batch}.{ext}',
    '{partition}/{date}/{hour}/{batch}.{ext}',
    'logs/dt={date}/h={hour}/{batch}.{ext}',
  ];
  for (const key of narrowing) {
    test(`${key}: the hour asked for, in every partition, and no other`, async () => {
      const byHour = written(key);
      const objects = memoryObjects([...byHour.values()].flat());
      const found = await keyLayout(key).keysBetween(objects, OUTPUT, NOON, BEFORE_ONE);
      assert.deepEqual(found.sort(), [...byHour.get('12')!].sort(), `listed prefixes: ${objects.listed.join(', ')}`);
    });
  }

  test('hourly-per-decision: the hour asked for and every later one (keys carry the hour a decision was received, never before its timestamp)', async () => {
    const byHour = written('hourly-per-decision');
    const found = await keyLayout('hourly-per-decision').keysBetween(
      memoryObjects([...byHour.values()].flat()),
      OUTPUT,
      NOON,
      BEFORE_ONE,
    );
    assert.deepEqual(found.sort(), [...byHour.get('12')!, ...byHour.get('14')!].sort());
  });

  test('a range of several hours gives each of them', async () => {
    const byHour = written('hive');
    const found = await keyLayout('hive').keysBetween(
      memoryObjects([...byHour.values()].flat()),
      OUTPUT,
      NOON,
      Date.parse('2026-05-01T14:00:00Z'),
    );
    assert.deepEqual(found.sort(), [...byHour.get('12')!, ...byHour.get('14')!].sort());
  });

  test('hive lists one prefix per partition and hour, not the whole output', async () => {
    const objects = memoryObjects([...written('hive').values()].flat());
    await keyLayout('hive').keysBetween(objects, OUTPUT, NOON, BEFORE_ONE);
    assert.deepEqual(objects.listed.sort(), ['default/dt=2026-05-01/hour=12/', 'p2/dt=2026-05-01/hour=12/']);
  });

  for (const key of ['{output}/{batch}.{ext}', '{date}/{partition}/{hour}/{batch}.{ext}', '{date}/{batch}.{ext}']) {
    test(`${key}: keys that do not start with the time are all candidates`, async () => {
      const all = [...written(key).values()].flat();
      const found = await keyLayout(key).keysBetween(memoryObjects(all), OUTPUT, NOON, BEFORE_ONE);
      assert.deepEqual(found.sort(), [...all].sort());
    });
  }

  test('eopa keys outside the range by their times are left out, keys of other prefixes are never read', async () => {
    const keys = [...written('eopa').values()].flat();
    const found = await keyLayout('eopa').keysBetween(
      memoryObjects([...keys, 'elsewhere/x.json']),
      OUTPUT,
      NOON,
      BEFORE_ONE,
    );
    assert.deepEqual(found.sort(), [...written('eopa').get('12')!].sort());
  });
});
