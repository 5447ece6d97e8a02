/**
 * Throughput of an output's drop and mask rules at delivery (src/delivery/encode.ts transformLines), on
 * ~600-byte OPA decisions (test/helpers/opa.ts) in groups of 1,000 lines, one process, best of 5 rounds:
 *
 *   node --import tsx bench/transform.ts [--count 100000]
 *
 * Each decision is parsed into a source tree, transformed, and written back as its exact text where the rules
 * did not change it. An output without rules never runs this (its objects are the buffer's bytes).
 */
import { parseArgs } from 'node:util';
import { transformLines } from '../src/delivery/encode.js';
import { buildTransform } from '../src/transforms/decision-transform.js';
import { rulesSchema } from '../src/transforms/rules-schema.js';
import { decision } from '../test/helpers/opa.js';

const { values: args } = parseArgs({ options: { count: { type: 'string', default: '100000' } } });
const count = Number(args.count);
const lines = Array.from({ length: count }, () => JSON.stringify(decision()));
const groups: Buffer[] = [];
for (let i = 0; i < count; i += 1000) groups.push(Buffer.from(`${lines.slice(i, i + 1000).join('\n')}\n`));
console.log(
  `${count} decisions, ${Math.round(lines.reduce((sum, l) => sum + l.length, 0) / count)} bytes each on average`,
);

const scenarios: Record<string, unknown> = {
  'mask remove (present)': { mask: ['/input/headers/x-request-id'] },
  'mask remove (absent)': { mask: ['/input/password'] },
  'mask upsert': { mask: [{ op: 'upsert', path: '/input/user/name', value: '***' }] },
  'drop (no match)': { drop: [{ field: 'path', prefix: 'system/health' }] },
  'drop + mask + when': {
    drop: [{ field: 'path', prefix: 'system/' }],
    mask: [
      '/input/password',
      { op: 'upsert', path: '/input/user/name', value: 'x', when: { field: 'input.method', equals: 'GET' } },
    ],
  },
};

function rate(run: () => void): number {
  let best = 0;
  for (let round = 0; round < 5; round++) {
    const start = performance.now();
    run();
    best = Math.max(best, count / ((performance.now() - start) / 1000));
  }
  return best;
}

const fmt = (n: number) => `${Math.round(n).toLocaleString('en')} decisions/s`;
// the machine's reference in the same run: JSON.parse + JSON.stringify of every decision
console.log(
  `reference, JSON.parse + JSON.stringify: ${fmt(
    rate(() => {
      for (const g of groups)
        for (const line of g.toString('utf8').split('\n')) if (line !== '') JSON.stringify(JSON.parse(line));
    }),
  )}`,
);
for (const [name, rules] of Object.entries(scenarios)) {
  const transform = buildTransform(undefined, rulesSchema.parse(rules))!;
  console.log(
    `${name}: ${fmt(
      rate(() => {
        for (const _ of transformLines(groups, transform));
      }),
    )}`,
  );
}
