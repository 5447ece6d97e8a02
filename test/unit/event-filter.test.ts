/** Outpost's destination filter as Sluice matches it (src/sources/event-filter.ts): the operators of Outpost's docs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { filterInput, filterProblems, matchesFilter } from '../../src/sources/event-filter.js';

const event = filterInput(
  {
    id: 'e1',
    topic: 'order.created',
    time_ms: Date.parse('2025-01-15T10:00:00.5Z'),
    metadata: { source: 'api', user_id: 'user_456' },
  },
  {
    type: 'order.created',
    amount: 100,
    tags: ['urgent', 'support'],
    customer: { id: 'cust_123', tier: 'premium' },
    email: 'a@example.com',
  },
);

const cases: Array<[Record<string, unknown>, boolean]> = [
  [{}, true],
  [{ data: { type: 'order.created' } }, true],
  [{ data: { type: 'order.updated' } }, false],
  [{ data: { amount: { $gte: 100, $lt: 500 } } }, true],
  [{ data: { amount: { $gt: 100 } } }, false],
  [{ data: { amount: { $neq: 100 } } }, false],
  [{ data: { customer: { tier: 'premium' } } }, true],
  [{ data: { tags: 'urgent' } }, true],
  [{ data: { tags: 'other' } }, false],
  [{ data: { type: { $in: ['order.created', 'x'] } } }, true],
  [{ data: { type: { $in: 'order' } } }, true],
  [{ data: { tags: { $in: 'urgent' } } }, true],
  [{ data: { type: { $nin: ['order.created'] } } }, false],
  [{ data: { email: { $endsWith: '@example.com' } } }, true],
  [{ topic: { $startsWith: ['x', 'order.'] } }, true],
  [{ data: { deleted_at: { $exist: false } } }, true],
  [{ data: { amount: { $exist: false } } }, false],
  [{ data: { customer: { $eq: { tier: 'premium', id: 'cust_123' } } } }, true],
  [{ $or: [{ data: { type: 'x' } }, { metadata: { source: 'api' } }] }, true],
  [{ $and: [{ data: { type: 'order.created' } }, { data: { amount: { $gte: 101 } } }] }, false],
  [{ $not: { metadata: { source: 'api' } } }, false],
  [{ data: { type: { $not: { $in: ['cancelled', 'refunded'] } } } }, true],
  [{ data: { type: { $not: { $in: ['order.created'] } } } }, false],
  [{ time: { $gte: '2025-01-01T00:00:00Z', $lt: '2025-02-01T00:00:00Z' } }, true],
  [{ time: '2025-01-15T10:00:00Z' }, true],
  [{ data: { amount: '100' } }, false],
];

for (const [filter, expected] of cases) {
  test(`${JSON.stringify(filter)} ${expected ? 'matches' : 'does not match'}`, () => {
    assert.equal(matchesFilter(filter, event), expected);
  });
}

test('unknown operators and malformed logical operators are named', () => {
  assert.deepEqual(
    filterProblems({ data: { x: { $regex: 'a' } }, $or: {}, metadata: { y: { $exist: 'yes' } } }).map((p) =>
      p.path.join('.'),
    ),
    ['data.x.$regex', '$or', 'metadata.y.$exist'],
  );
  assert.deepEqual(filterProblems({ data: { amount: { $gte: 1 } } }), []);
  assert.equal(filterProblems([]).length, 1);
});
