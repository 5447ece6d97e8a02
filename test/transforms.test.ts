/**
 * Decision drop and mask rules (src/transforms): the rule schema's errors, the condition language, and
 * mask remove/upsert with OPA's semantics (plugins/logs/mask.go), as pure functions on hand-checked
 * decisions. Decisions go in as source trees (src/json/source-tree.ts) of their JSON text; inputs are
 * deep-frozen, so any mutation of a decision throws. Then: the text a masked decision is written as is the
 * received text with only the masked parts changed (number text, key order), also for random documents.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parse as parseYaml } from 'yaml';
import { rulesSchema, type RulesConfig } from '../src/transforms/rules-schema.js';
import { buildTransform, type DecisionTransform } from '../src/transforms/decision-transform.js';
import { nodeAt } from '../src/transforms/json-path.js';
import { parseJson, toText, type JsonNode } from '../src/json/source-tree.js';

type Decision = Record<string, unknown>;

function rules(input: unknown): RulesConfig {
  return rulesSchema.parse(input);
}

function transform(global: unknown, output?: unknown): DecisionTransform {
  const t = buildTransform(
    global === undefined ? undefined : rules(global),
    output === undefined ? undefined : rules(output),
  );
  assert.ok(t, 'expected a transform');
  return t;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** The frozen source tree of `d` (or of JSON text); transforming it must not throw (no mutation). */
function frozen(d: Decision | string): JsonNode {
  return deepFreeze(parseJson(typeof d === 'string' ? d : JSON.stringify(d)));
}

/** A decision as a JS value (to build variants of it). */
function plain(extra: Decision = {}): Decision {
  return {
    decision_id: 'd-1',
    path: 'http/example/authz/allow',
    labels: { id: 'opa-1', version: '1.4.2' },
    input: { method: 'GET', user: { name: 'bob', role: 'dev' }, password: 'hunter2' },
    result: true,
    timestamp: '2026-11-21T10:13:14.123456Z',
    ...extra,
  };
}

/** A decision as its frozen source tree. */
function decision(extra: Decision = {}): JsonNode {
  return frozen(plain(extra));
}

/** What a transformed decision says, as a JS value (of the text it would be written as). */
function js(node: JsonNode | undefined): Decision {
  assert.ok(node, 'expected a decision, not a drop');
  return JSON.parse(toText(node)) as Decision;
}

/** The node at a path of a tree (to check which parts an edit shares with its input). */
function at(node: JsonNode, ...path: string[]): JsonNode | undefined {
  return nodeAt(node, path);
}

/** Issues of a failed parse as `path: message` lines. */
function issues(input: unknown): Array<{ path: string; message: string }> {
  const result = rulesSchema.safeParse(input);
  assert.equal(result.success, false, 'expected a schema error');
  return result.error!.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
}

describe('buildTransform without rules', () => {
  test('is undefined when there is no rule at all', () => {
    assert.equal(buildTransform(undefined, undefined), undefined);
    assert.equal(buildTransform(rules({}), rules({ drop: [], mask: [] })), undefined);
    assert.notEqual(buildTransform(undefined, rules({ mask: ['/input/password'] })), undefined);
    assert.notEqual(buildTransform(rules({ drop: [{ field: 'result', equals: false }] }), undefined), undefined);
  });
});

describe('drop conditions', () => {
  test('drops health checks by path prefix or equality, keeps the rest as the same object', () => {
    const t = transform({
      drop: [
        { field: 'path', prefix: 'system/health' },
        { field: 'path', equals: 'system/ready' },
      ],
    });
    assert.equal(t(decision({ path: 'system/health/live' })), undefined);
    assert.equal(t(decision({ path: 'system/health' })), undefined);
    assert.equal(t(decision({ path: 'system/ready' })), undefined);
    const notReady = decision({ path: 'system/ready/x' });
    assert.equal(t(notReady), notReady, 'equals is not a prefix test');
    const kept = decision();
    assert.equal(t(kept), kept);
    // prefix only applies to strings
    assert.notEqual(t(decision({ path: ['system/health'] })), undefined);
  });

  test('keeps only denials: drop result equals true', () => {
    const t = transform({ drop: [{ field: 'result', equals: true }] });
    assert.equal(t(decision({ result: true })), undefined);
    const denied = decision({ result: false });
    assert.equal(t(denied), denied);
    assert.ok(t(decision({ result: 'true' })), 'a string is not the boolean true');
    assert.ok(t(decision({ result: { allow: true } })));
    const { result: _ignored, ...noResult } = plain();
    assert.ok(t(frozen(noResult)), 'a missing result does not equal true');
  });

  test('equals is deep JSON equality: key order does not matter, array order does', () => {
    const t = transform({ drop: [{ field: 'input.user', equals: { role: 'dev', name: 'bob', tags: ['a', 'b'] } }] });
    assert.equal(t(decision({ input: { user: { name: 'bob', role: 'dev', tags: ['a', 'b'] } } })), undefined);
    assert.ok(t(decision({ input: { user: { name: 'bob', role: 'dev', tags: ['b', 'a'] } } })));
    assert.ok(t(decision({ input: { user: { name: 'bob', role: 'dev', tags: ['a', 'b'], extra: 1 } } })));
    assert.ok(t(decision({ input: { user: { name: 'bob', role: 'dev' } } })));
    const nullEquals = transform({ drop: [{ field: 'input.x', equals: null }] });
    assert.equal(nullEquals(decision({ input: { x: null } })), undefined);
    assert.ok(nullEquals(decision({ input: {} })), 'a missing value does not equal null');
  });

  test('matches is an unanchored RegExp test on strings only', () => {
    const t = transform({ drop: [{ field: 'input.method', matches: '^(GET|HEAD)$' }] });
    assert.equal(t(decision({ input: { method: 'GET' } })), undefined);
    assert.equal(t(decision({ input: { method: 'HEAD' } })), undefined);
    assert.ok(t(decision({ input: { method: 'POST' } })));
    assert.ok(t(decision({ input: { method: 'GETX' } })));
    assert.ok(t(decision({ input: { method: 7 } })));
    assert.ok(t(decision({ input: { method: ['GET'] } })), 'an array is not tested as its string form');
    assert.ok(t(decision({ input: {} })));
    const unanchored = transform({ drop: [{ field: 'path', matches: 'health' }] });
    assert.equal(unanchored(decision({ path: 'system/health/live' })), undefined);
  });

  test('in is membership by deep equality', () => {
    const t = transform({ drop: [{ field: 'labels.id', in: ['opa-1', 'opa-2'] }] });
    assert.equal(t(decision({ labels: { id: 'opa-2' } })), undefined);
    assert.ok(t(decision({ labels: { id: 'opa-3' } })));
    assert.ok(t(decision({ labels: {} })));
    const mixed = transform({ drop: [{ field: 'result', in: [1, null, { allow: false }] }] });
    assert.equal(mixed(decision({ result: 1 })), undefined);
    assert.equal(mixed(decision({ result: null })), undefined);
    assert.equal(mixed(decision({ result: { allow: false } })), undefined);
    assert.ok(mixed(decision({ result: '1' })));
    assert.ok(mixed(decision({ result: { allow: true } })));
  });

  test('exists: null exists, missing does not, prototype members are not fields', () => {
    const present = transform({ drop: [{ field: 'input.user.role', exists: true }] });
    const absent = transform({ drop: [{ field: 'input.user.role', exists: false }] });
    assert.equal(present(decision()), undefined);
    assert.ok(absent(decision()));
    assert.equal(present(decision({ input: { user: { role: null } } })), undefined);
    assert.ok(present(decision({ input: { user: {} } })));
    assert.equal(absent(decision({ input: { user: {} } })), undefined);
    assert.equal(absent(decision({ input: 'not an object' })), undefined, 'a step through a string is missing');
    const proto = transform({
      drop: [
        { field: 'input.constructor', exists: true },
        { field: 'input.toString', exists: true },
      ],
    });
    assert.ok(proto(decision()));
  });

  test('fields as JSON pointers (with ~0 ~1) and array indexes', () => {
    const t = transform({ drop: [{ field: '/input/headers/x~1forwarded~0for', equals: '10.0.0.1' }] });
    assert.equal(t(decision({ input: { headers: { 'x/forwarded~for': '10.0.0.1' } } })), undefined);
    assert.ok(t(decision({ input: { headers: { 'x~1forwarded~0for': '10.0.0.1' } } })));
    const idx = transform({
      drop: [
        { field: 'input.items.1', equals: 'b' },
        { field: '/input/list/0/name', prefix: 'adm' },
      ],
    });
    assert.equal(idx(decision({ input: { items: ['a', 'b'] } })), undefined);
    assert.equal(idx(decision({ input: { list: [{ name: 'admin' }] } })), undefined);
    assert.ok(idx(decision({ input: { items: ['b'], list: [] } })));
  });

  test('all, any and not nest', () => {
    // drop allowed http decisions unless the user is an admin or it was a write
    const t = transform({
      drop: [
        {
          all: [
            { field: 'path', prefix: 'http/' },
            { field: 'result', equals: true },
            {
              not: {
                any: [
                  { field: 'input.user.role', equals: 'admin' },
                  { field: 'input.method', in: ['POST', 'PUT', 'DELETE'] },
                ],
              },
            },
          ],
        },
      ],
    });
    assert.equal(t(decision()), undefined);
    assert.ok(t(decision({ result: false })));
    assert.ok(t(decision({ path: 'kafka/authz' })));
    assert.ok(t(decision({ input: { method: 'GET', user: { role: 'admin' } } })));
    assert.ok(t(decision({ input: { method: 'DELETE', user: { role: 'dev' } } })));
    const notMissing = transform({ drop: [{ not: { field: 'input.tenant', equals: 'acme' } }] });
    assert.equal(notMissing(decision()), undefined, 'not of a missing field is true');
    assert.ok(notMissing(decision({ input: { tenant: 'acme' } })));
  });
});

describe('mask', () => {
  test('removes a password and records it in erased, leaving the original untouched', () => {
    const original = decision();
    const tree = transform({ mask: ['/input/password'] })(original)!;
    const out = js(tree);
    assert.deepEqual(out.input, { method: 'GET', user: { name: 'bob', role: 'dev' } });
    assert.deepEqual(out.erased, ['/input/password']);
    assert.equal(out.masked, undefined);
    assert.equal((js(original).input as Decision).password, 'hunter2');
    assert.equal(js(original).erased, undefined);
    // only the changed path is rebuilt
    assert.notEqual(tree, original);
    assert.equal(at(tree, 'labels'), at(original, 'labels'));
    assert.equal(at(tree, 'input', 'user'), at(original, 'input', 'user'));
  });

  test('upserts /input/user/ssn and records it in masked; creates missing intermediate objects', () => {
    const t = transform({ mask: [{ op: 'upsert', path: '/input/user/ssn', value: '***' }] });
    const original = decision({ input: { user: { name: 'bob', ssn: '123-45-6789' } } });
    const out = js(t(original));
    assert.deepEqual(out.input, { user: { name: 'bob', ssn: '***' } });
    assert.deepEqual(out.masked, ['/input/user/ssn']);
    assert.equal(out.erased, undefined);
    assert.equal(((js(original).input as Decision).user as Decision).ssn, '123-45-6789');
    const created = js(t(decision({ input: { method: 'GET' } })));
    assert.deepEqual(created.input, { method: 'GET', user: { ssn: '***' } });
    assert.deepEqual(created.masked, ['/input/user/ssn']);
  });

  test('appends to an erased list OPA already sent, without touching it', () => {
    const original = decision({ erased: ['/input/token'], masked: ['/input/ssn'] });
    const out = js(
      transform({ mask: ['/input/password', { op: 'upsert', path: '/input/method', value: 'X' }] })(original),
    );
    assert.deepEqual(out.erased, ['/input/token', '/input/password']);
    assert.deepEqual(out.masked, ['/input/ssn', '/input/method']);
    assert.deepEqual(js(original).erased, ['/input/token']);
    assert.deepEqual(js(original).masked, ['/input/ssn']);
  });

  test('a remove of a missing path changes and records nothing', () => {
    const t = transform({
      mask: ['/input/secret', '/input/user/token', '/input/method/x', '/result/x', '/nd_builtin_cache'],
    });
    const original = decision();
    const out = t(original);
    assert.equal(out, original);
    assert.equal(js(out).erased, undefined);
  });

  test('the first segment picks input, result or nd_builtin_cache; absent or null does nothing', () => {
    const t = transform({
      mask: ['/result', '/nd_builtin_cache/time.now_ns', { op: 'upsert', path: '/input', value: 'gone' }],
    });
    const out = js(t(decision({ nd_builtin_cache: { 'time.now_ns': { '[]': 1 }, 'rand.intn': {} } })));
    assert.equal('result' in out, false);
    assert.deepEqual(out.nd_builtin_cache, { 'rand.intn': {} });
    assert.equal(out.input, 'gone');
    assert.deepEqual(out.erased, ['/result', '/nd_builtin_cache/time.now_ns']);
    assert.deepEqual(out.masked, ['/input']);
    const { input: _i, result: _r, ...bare } = plain();
    const none = frozen({ ...bare, result: null });
    assert.equal(t(none), none, 'no input, a null result: nothing to mask');
    const upsertNoInput = transform({ mask: [{ op: 'upsert', path: '/input/user/ssn', value: '***' }] });
    const noInput = frozen(bare);
    assert.equal(upsertNoInput(noInput), noInput, 'OPA does not upsert into a missing input');
  });

  test('arrays: index steps, splice on remove, replace in range on upsert, no append', () => {
    const input = { items: [{ id: 1, secret: 's' }, { id: 2 }, { id: 3 }], tags: ['a', 'b'] };
    const run = (mask: unknown[], d = decision({ input })) => transform({ mask })(d)!;

    const removed = js(run(['/input/items/1']));
    assert.deepEqual((removed.input as Decision).items, [{ id: 1, secret: 's' }, { id: 3 }]);
    assert.deepEqual(removed.erased, ['/input/items/1']);

    const before = decision({ input });
    const inner = run(['/input/items/0/secret'], before);
    assert.deepEqual((js(inner).input as Decision).items, [{ id: 1 }, { id: 2 }, { id: 3 }]);
    assert.notEqual(at(inner, 'input', 'items'), at(before, 'input', 'items'));
    assert.equal(at(inner, 'input', 'items', '1'), at(before, 'input', 'items', '1'), 'untouched elements are shared');
    assert.deepEqual(((js(before).input as Decision).items as unknown[])[0], { id: 1, secret: 's' });

    // rules apply in sequence: after removing element 0, the old element 2 is at index 1
    const shifted = js(run(['/input/items/0', '/input/items/1']));
    assert.deepEqual((shifted.input as Decision).items, [{ id: 2 }]);

    const replaced = js(run([{ op: 'upsert', path: '/input/tags/1', value: 'x' }]));
    assert.deepEqual((replaced.input as Decision).tags, ['a', 'x']);
    assert.deepEqual(replaced.masked, ['/input/tags/1']);

    for (const path of ['/input/tags/2', '/input/tags/-', '/input/tags/-1', '/input/tags/x', '/input/items/7/id']) {
      const d = decision({ input });
      assert.equal(run([{ op: 'upsert', path, value: 'x' }], d), d, `upsert ${path} does nothing`);
      assert.equal(run([path], d), d, `remove ${path} does nothing`);
    }

    // as in OPA: an element of a top-level array is not removed, and upsert needs an object at the top
    const topArray = decision({ input: ['a', 'b'] });
    assert.equal(run(['/input/0'], topArray), topArray);
    const nested = js(run(['/input/0/1'], decision({ input: [['a', 'b']] })));
    assert.deepEqual(nested.input, [['a']], 'an element of a nested array is removed');
    assert.equal(run([{ op: 'upsert', path: '/input/0', value: 'x' }], topArray), topArray);
  });

  test('an upsert through a non-object changes and records nothing', () => {
    const d = decision({ input: { user: 'bob', nothing: null } });
    const t = transform({
      mask: [
        { op: 'upsert', path: '/input/user/ssn', value: '***' },
        { op: 'upsert', path: '/input/nothing/x', value: 1 },
      ],
    });
    assert.equal(t(d), d);
  });

  test('removing the whole input deletes the field', () => {
    const out = js(transform({ mask: ['/input'] })(decision()));
    assert.equal('input' in out, false);
    assert.deepEqual(out.erased, ['/input']);
  });

  test('pointer segments are RFC 6901: ~1 is / and ~0 is ~; the recorded pointer is as written', () => {
    const out = js(
      transform({ mask: ['/input/headers/x~1api~0key'] })(
        decision({ input: { headers: { 'x/api~key': 'k', other: 'o' } } }),
      ),
    );
    assert.deepEqual(out.input, { headers: { other: 'o' } });
    assert.deepEqual(out.erased, ['/input/headers/x~1api~0key']);
  });

  test('a key named __proto__ is an ordinary key', () => {
    const d = frozen('{"input":{"__proto__":{"a":1},"b":2}}');
    const out = transform({ mask: [{ op: 'upsert', path: '/input/__proto__/a', value: 0 }] })(d)!;
    assert.equal(toText(at(out, 'input')!), '{"__proto__":{"a":0},"b":2}');
    assert.equal(Object.getPrototypeOf(js(out).input), Object.prototype);
  });

  test('when: an entry applies only when its condition matches the decision as received', () => {
    const t = transform({
      mask: [
        { op: 'remove', path: '/input/user', when: { field: 'input.user.role', equals: 'dev' } },
        // evaluated before masking: input.user still exists for this condition
        { op: 'upsert', path: '/input/had_user', value: true, when: { field: 'input.user', exists: true } },
        { op: 'upsert', path: '/input/method', value: 'REDACTED', when: { field: 'labels.id', equals: 'opa-9' } },
      ],
    });
    const dev = js(t(decision()));
    assert.deepEqual(dev.input, { method: 'GET', password: 'hunter2', had_user: true });
    assert.deepEqual(dev.erased, ['/input/user']);
    assert.deepEqual(dev.masked, ['/input/had_user']);
    const admin = js(t(decision({ input: { method: 'GET', user: { role: 'admin' } }, labels: { id: 'opa-9' } })));
    assert.deepEqual(admin.input, { method: 'REDACTED', user: { role: 'admin' }, had_user: true });
    assert.equal(admin.erased, undefined);
    assert.deepEqual(admin.masked, ['/input/had_user', '/input/method']);
  });

  test('global rules apply first, then the output rules; either drop drops', () => {
    const global = {
      drop: [{ field: 'path', prefix: 'system/' }],
      mask: [{ op: 'upsert', path: '/input/user/name', value: 'global' }],
    };
    const output = {
      drop: [{ field: 'result', equals: false }],
      mask: [{ op: 'upsert', path: '/input/user/name', value: 'output' }, '/input/password'],
    };
    const t = transform(global, output);
    assert.equal(t(decision({ path: 'system/health' })), undefined);
    assert.equal(t(decision({ result: false })), undefined);
    const out = js(t(decision()));
    assert.deepEqual((out.input as Decision).user, { name: 'output', role: 'dev' });
    assert.deepEqual(out.masked, ['/input/user/name', '/input/user/name']);
    assert.deepEqual(out.erased, ['/input/password']);
    // the other way round, the global value would win
    const reversed = js(transform(output, global)(decision()));
    assert.deepEqual((reversed.input as Decision).user, { name: 'global', role: 'dev' });
    // output-only and global-only
    assert.equal(transform(undefined, output)(decision({ result: false })), undefined);
    assert.ok(transform(global, undefined)(decision({ result: false })));
  });

  test('a later entry writing inside an upserted value does not change the configured value', () => {
    const config = rules({
      mask: [
        { op: 'upsert', path: '/input/user', value: { name: 'x' } },
        { op: 'upsert', path: '/input/user/name', value: 'y' },
      ],
    });
    const t = buildTransform(undefined, config)!;
    const out = js(t(decision()));
    assert.deepEqual((out.input as Decision).user, { name: 'y' });
    assert.deepEqual(js(t(decision())).input, { method: 'GET', user: { name: 'y' }, password: 'hunter2' });
    assert.deepEqual((config.mask[0] as { value: unknown }).value, { name: 'x' });
  });
});

describe('rulesSchema errors name the rule', () => {
  test('a mask path outside /input, /result, /nd_builtin_cache', () => {
    assert.deepEqual(issues({ mask: ['/input/ok', '/labels/id'] }), [
      { path: 'mask.1', message: 'a mask path must start with /input, /result or /nd_builtin_cache, not "/labels/id"' },
    ]);
    const [objectForm] = issues({ mask: [{ op: 'remove', path: 'input/password' }] });
    assert.equal(objectForm!.path, 'mask.0.path');
    assert.match(objectForm!.message, /^a mask path must start with \/input, \/result or \/nd_builtin_cache/);
    assert.equal(issues({ mask: ['/inputs/x'] })[0]!.path, 'mask.0');
    assert.match(issues({ mask: ['/input/a~2'] })[0]!.message, /~ must be followed by 0 \(for ~\) or 1 \(for \/\)/);
  });

  test('an invalid regular expression, also nested', () => {
    const [top] = issues({ drop: [{ field: 'input.method', matches: '(GET' }] });
    assert.equal(top!.path, 'drop.0.matches');
    assert.match(top!.message, /^not a valid regular expression: /);
    const [nested] = issues({
      drop: [{ field: 'path', equals: 'x' }, { any: [{ not: { field: 'input.a', matches: '[' } }] }],
    });
    assert.equal(nested!.path, 'drop.1.any.0.not.matches');
    const [inWhen] = issues({ mask: [{ op: 'remove', path: '/input/a', when: { field: 'path', matches: '*' } }] });
    assert.equal(inWhen!.path, 'mask.0.when.matches');
  });

  test('a condition with two operators, or none', () => {
    assert.deepEqual(issues({ drop: [{ field: 'path', prefix: 'system/', equals: 'x' }] }), [
      {
        path: 'drop.0',
        message:
          'a condition takes exactly one operator, this one has prefix and equals: combine conditions with all: [...] or any: [...]',
      },
    ]);
    assert.match(
      issues({ drop: [{ all: [{ field: 'a', exists: true }], any: [{ field: 'b', exists: true }] }] })[0]!.message,
      /exactly one operator, this one has all and any/,
    );
    assert.deepEqual(issues({ drop: [{ field: 'path' }] }), [
      {
        path: 'drop.0',
        message: 'a condition needs field with one of equals, in, prefix, matches, exists, or one of all, any, not',
      },
    ]);
  });

  test('other mistakes: a missing field, a bad field, empty lists, unknown keys, upsert without value', () => {
    assert.deepEqual(
      issues({ drop: [{ equals: 1 }] }).map((i) => i.path),
      ['drop.0.field'],
    );
    assert.match(issues({ drop: [{ field: 'input..x', exists: true }] })[0]!.message, /empty segment/);
    assert.deepEqual(issues({ drop: [{ all: [] }] }), [
      { path: 'drop.0.all', message: 'all needs at least one condition' },
    ]);
    assert.deepEqual(issues({ drop: [{ field: 'a', in: [] }] }), [
      { path: 'drop.0.in', message: 'in needs at least one value' },
    ]);
    assert.deepEqual(issues({ drop: [{ not: { field: 'a', exists: 'yes' } }] }), [
      { path: 'drop.0.not.exists', message: 'exists must be true or false' },
    ]);
    assert.match(
      issues({ drop: [{ any: [{ field: 'a', exists: true }], field: 'a' }] })[0]!.message,
      /any does not take a field/,
    );
    const unknown = rulesSchema.safeParse({ drop: [{ field: 'a', exists: true, when: 1 }], masks: [] });
    assert.equal(unknown.success, false);
    assert.deepEqual(
      unknown.error!.issues.map((i) => [i.code, i.path.join('.')]),
      [
        ['unrecognized_keys', 'drop.0'],
        ['unrecognized_keys', ''],
      ],
    );
    assert.deepEqual(issues({ mask: [{ op: 'upsert', path: '/input/ssn' }] }), [
      { path: 'mask.0.value', message: 'an upsert needs a value (what replaces the data, e.g. "***")' },
    ]);
    assert.equal(issues({ mask: [{ op: 'replace', path: '/input/ssn', value: 1 }] })[0]!.path, 'mask.0.op');
    assert.equal(issues({ mask: [{ op: 'remove', path: '/input/ssn', value: 1 }] })[0]!.path, 'mask.0.value');
    assert.equal(issues({ mask: [42] })[0]!.path, 'mask.0');
  });

  test('defaults and the parsed shape', () => {
    assert.deepEqual(rules({}), { drop: [], mask: [] });
    assert.deepEqual(rules({ mask: ['/input/a', { op: 'upsert', path: '/result', value: null }] }), {
      drop: [],
      mask: ['/input/a', { op: 'upsert', path: '/result', value: null }],
    });
  });
});

describe('README examples (YAML)', () => {
  const fromYaml = (yaml: string) => transform(parseYaml(yaml));

  test('drop health checks', () => {
    const t = fromYaml(`
drop:
  - field: path
    prefix: system/health
  - field: path
    equals: system/ready
`);
    assert.equal(t(decision({ path: 'system/health/live' })), undefined);
    assert.equal(t(decision({ path: 'system/ready' })), undefined);
    assert.ok(t(decision()));
  });

  test('mask passwords', () => {
    const t = fromYaml(`
mask:
  - /input/password
  - op: upsert
    path: /input/user/ssn
    value: "***"
    when: { field: input.user.ssn, exists: true }
`);
    const out = js(t(decision({ input: { password: 'p', user: { ssn: '1' } } })));
    assert.deepEqual(out.input, { user: { ssn: '***' } });
    assert.deepEqual(out.erased, ['/input/password']);
    assert.deepEqual(out.masked, ['/input/user/ssn']);
    const noSsn = js(t(decision({ input: { user: {} } })));
    assert.deepEqual(noSsn.input, { user: {} });
    assert.equal(noSsn.masked, undefined);
  });

  test('keep only denials', () => {
    const t = fromYaml(`
drop:
  - field: result
    equals: true
`);
    assert.equal(t(decision()), undefined);
    assert.ok(t(decision({ result: false })));
  });
});

// ---------------------------------------------------------------------------------------------------------
// The text a kept decision is written as

/** What an output writes for a decision's text: the transform's tree as text (undefined: dropped). */
function written(t: DecisionTransform, text: string): string | undefined {
  const tree = frozen(text);
  const out = t(tree);
  return out === undefined ? undefined : toText(out);
}

/** Numbers JS cannot hold as written, and integer-like keys (which JS objects would move first). */
const EXOTIC =
  '"n":{"big":12345678901234567890123,"beyond_2_53":9007199254740993,"digits":0.10000000000000000555,' +
  '"huge":1E+400,"negative_zero":-0.0,"exp":2.50e-7},"order":{"b":1,"2":2,"a":3,"1":4}';

describe('a masked decision is the received text, changed only where masked', () => {
  test('remove: numbers and key order elsewhere stay as sent; erased is appended', () => {
    const text = `{"decision_id":"d-1","input":{"password":"hunter2",${EXOTIC},"user":"bob"},"result":{${EXOTIC}},"timestamp":"2026-11-21T10:13:14.123456Z"}`;
    const out = written(transform({ mask: ['/input/password'] }), text);
    assert.equal(
      out,
      `{"decision_id":"d-1","input":{${EXOTIC},"user":"bob"},"result":{${EXOTIC}},"timestamp":"2026-11-21T10:13:14.123456Z","erased":["/input/password"]}`,
    );
  });

  test('upsert: only the value at the pointer changes; masked is appended after an existing list', () => {
    const text = `{"input":{"user":{"ssn":"123-45-6789","id":12345678901234567890123},${EXOTIC}},"masked":["/input/x"],"result":-0.0}`;
    const out = written(transform({ mask: [{ op: 'upsert', path: '/input/user/ssn', value: '***' }] }), text);
    assert.equal(
      out,
      `{"input":{"user":{"ssn":"***","id":12345678901234567890123},${EXOTIC}},"masked":["/input/x","/input/user/ssn"],"result":-0.0}`,
    );
  });

  test('upsert creating objects appends them; an integer-like key stays where it is', () => {
    const text = '{"input":{"9":1,"b":{"2":0.10000000000000000555}},"result":1E+400}';
    const out = written(transform({ mask: [{ op: 'upsert', path: '/input/b/c/d', value: { z: 1, 3: 'x' } }] }), text);
    // the configured value is a JS object: its own keys are in JS order ({3, z}), the decision's are not
    assert.equal(
      out,
      '{"input":{"9":1,"b":{"2":0.10000000000000000555,"c":{"d":{"3":"x","z":1}}}},"result":1E+400,"masked":["/input/b/c/d"]}',
    );
  });

  test('an array element removed from an array of exotic numbers', () => {
    const text = '{"input":{"list":[12345678901234567890123,9007199254740993,-0.0,1E+400]}}';
    assert.equal(
      written(transform({ mask: ['/input/list/1'] }), text),
      '{"input":{"list":[12345678901234567890123,-0.0,1E+400]},"erased":["/input/list/1"]}',
    );
  });

  test('whitespace is kept too, but next to a change: runs of untouched members are slices of the source', () => {
    const text = '{ "input" : { "password" : "x" , "keep" : { "a" : [ 1 , 2 ] } } , "result" : true , "also" :1E+400 }';
    assert.equal(
      written(transform({ mask: ['/input/password'] }), text),
      '{"input":{"keep" : { "a" : [ 1 , 2 ] }},"result" : true , "also" :1E+400,"erased":["/input/password"]}',
    );
    const list = '{"input":{"l":[ 1 , 2 ,\n3 , 4 ]}}';
    assert.equal(
      written(transform({ mask: ['/input/l/1'] }), list),
      '{"input":{"l":[1,3 , 4]},"erased":["/input/l/1"]}',
    );
  });

  test('kept by drop rules, or masks that match nothing: the very same tree, so the line is written as it is', () => {
    const text = `{"path":"x",${EXOTIC},"input":{"a":1}}`;
    const tree = frozen(text);
    assert.equal(transform({ drop: [{ field: 'path', prefix: 'system/' }] })(tree), tree);
    assert.equal(
      transform({ mask: ['/input/b', '/result', { op: 'upsert', path: '/input/a/b', value: 1 }] })(tree),
      tree,
    );
    assert.equal(written(transform({ mask: ['/input/b'] }), text), text);
  });

  test('conditions read exotic numbers and escaped strings as JSON.parse would', () => {
    const text =
      '{"path":"sys\\u0074em/health","input":{"n":1E+400,"z":-0.0,"big":9007199254740993,"o":{"2":1,"a":[1]}}}';
    const drops = (condition: unknown) => written(transform({ drop: [condition] }), text) === undefined;
    assert.ok(drops({ field: 'path', prefix: 'system/' }), 'an escaped string is decoded');
    assert.ok(drops({ field: 'input.z', equals: 0 }), '-0.0 equals 0, as in JS');
    assert.ok(
      drops({ field: 'input.big', equals: 9007199254740992 }),
      'a number compares as the double JSON.parse gives',
    );
    assert.ok(drops({ field: 'input.o', equals: { a: [1], 2: 1 } }), 'objects compare deeply, key order aside');
    assert.ok(drops({ field: 'input.n', exists: true }));
    assert.ok(!drops({ field: 'input.o.a', equals: [2] }));
    assert.ok(drops({ field: 'input.o.a', in: [[1], 'x'] }));
  });

  test('duplicate keys: the last one counts, and a masked key leaves no earlier copy behind', () => {
    const text = '{"input":{"password":"first","user":"bob","password":"second"}}';
    assert.equal(
      written(transform({ mask: ['/input/password'] }), text),
      '{"input":{"user":"bob"},"erased":["/input/password"]}',
    );
    assert.equal(
      written(transform({ mask: [{ op: 'upsert', path: '/input/password', value: '***' }] }), text),
      '{"input":{"user":"bob","password":"***"},"masked":["/input/password"]}',
    );
    assert.equal(written(transform({ drop: [{ field: 'input.password', equals: 'second' }] }), text), undefined);
  });
});

// Random documents as text: every number form JSON allows (big integers, exponents, -0.0 and what
// fc.jsonValue gives), integer-like and escaped keys, duplicates, and whitespace between tokens.
const ws = fc.constantFrom('', '', '', ' ', '\n', '\t', ' \r\n ');
const numberText = fc.oneof(
  fc.constantFrom(
    '12345678901234567890123',
    '9007199254740993',
    '0.10000000000000000555',
    '1E+400',
    '-0.0',
    '-0',
    '1e-400',
    '2.50E-7',
    '0',
    '-123456789012345678901234567890.5e+10',
    '1.0',
    '100e0',
  ),
  fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
);
const keyString = fc.oneof(
  fc.constantFrom(
    '0',
    '1',
    '2',
    '10',
    '007',
    '-1',
    '4294967295',
    '__proto__',
    'constructor',
    'a',
    'b',
    'password',
    'a/b',
    'a~b',
    'é',
    'x"y',
    '',
  ),
  fc.string({ maxLength: 6 }),
);
/** A key as JSON text: usually JSON.stringify'd, sometimes with an escape where none is needed. */
const keyText = fc
  .tuple(keyString, fc.boolean())
  .map(([k, escape]) =>
    escape && k.length > 0
      ? `"\\u${k.charCodeAt(0).toString(16).padStart(4, '0')}${JSON.stringify(k.slice(1)).slice(1)}`
      : JSON.stringify(k),
  );
const { value: jsonText } = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    numberText,
    fc.string({ maxLength: 8 }).map((s) => JSON.stringify(s)),
    fc.constantFrom('true', 'false', 'null'),
    fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
    tie('array'),
    tie('object'),
  ),
  array: fc
    .tuple(fc.array(fc.tuple(ws, tie('value'), ws), { maxLength: 4 }), ws)
    .map(([items, inner]) =>
      items.length === 0 ? `[${inner}]` : `[${items.map(([a, v, b]) => a + v + b).join(',')}]`,
    ),
  object: fc
    .tuple(fc.array(fc.tuple(ws, keyText, ws, ws, tie('value'), ws), { maxLength: 4 }), ws)
    .map(([members, inner]) =>
      members.length === 0
        ? `{${inner}}`
        : `{${members.map(([a, k, b, c, v, d]) => `${a}${k}${b}:${c}${v}${d}`).join(',')}}`,
    ),
}));

/** RFC 6901 escaping of one pointer segment. */
const escapeSegment = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** The value at a pointer of a JSON.parse'd document (own keys; array indexes in range), independently of src/. */
function parsedAt(doc: unknown, segments: string[]): { found: boolean } {
  let node = doc;
  for (const s of segments) {
    if (Array.isArray(node)) {
      if (!/^[+-]?\d+$/.test(s) || Number(s) < 0 || Number(s) >= node.length) return { found: false };
      node = node[Number(s)];
    } else if (node !== null && typeof node === 'object' && Object.prototype.hasOwnProperty.call(node, s)) {
      node = (node as Decision)[s];
    } else {
      return { found: false };
    }
  }
  return { found: true };
}

describe('properties on random documents', () => {
  test('the generated texts are JSON', () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        JSON.parse(text);
      }),
      { numRuns: 300 },
    );
  });

  test('a tree kept only as deep as the rules read gives the same text as the whole tree, and the same drops', () => {
    const segment = fc.oneof(keyString, fc.constantFrom('0', '1', '2', 'a', 'b'));
    const pointer = fc
      .tuple(fc.constantFrom('input', 'result'), fc.array(segment, { minLength: 1, maxLength: 3 }))
      .map(([root, rest]) => `/${[root, ...rest].map(escapeSegment).join('/')}`);
    const field = fc
      .array(segment, { minLength: 1, maxLength: 4 })
      .map((segments) => `/${segments.map(escapeSegment).join('/')}`);
    const condition = fc.oneof(
      field.map((f) => ({ field: f, exists: true })),
      fc.tuple(field, fc.jsonValue({ maxDepth: 1 })).map(([f, v]) => ({ field: f, equals: v })),
      fc.tuple(field, fc.string({ maxLength: 2 })).map(([f, p]) => ({ field: f, prefix: p })),
    );
    const entry = fc.oneof(
      pointer,
      fc.record({ op: fc.constant('remove'), path: pointer, when: condition }),
      fc.tuple(pointer, fc.jsonValue({ maxDepth: 1 })).map(([path, value]) => ({ op: 'upsert', path, value })),
    );
    fc.assert(
      fc.property(
        jsonText,
        jsonText,
        fc.array(entry, { maxLength: 3 }),
        fc.array(condition, { maxLength: 2 }),
        (input, result, mask, drop) => {
          fc.pre(mask.length + drop.length > 0);
          const t = transform({ mask, drop });
          const text = `{"decision_id":"d","input":${input},"result":${result},"erased":["/x"]}`;
          const whole = t(parseJson(text));
          const shallow = t(parseJson(text, Infinity, t.depth));
          assert.equal(
            shallow === undefined ? undefined : toText(shallow),
            whole === undefined ? undefined : toText(whole),
          );
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('a remove of an absent pointer leaves the text byte for byte', () => {
    const pointer = fc.array(fc.oneof(keyString, fc.constantFrom('0', '1', '2')), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(
        jsonText,
        jsonText,
        ws,
        pointer,
        fc.constantFrom('input', 'result'),
        (input, result, space, segments, root) => {
          const text = `{${space}"decision_id":"d",${space}"input":${space}${input},"result":${result}${space}}`;
          fc.pre(!parsedAt(JSON.parse(text), [root, ...segments]).found);
          const path = `/${[root, ...segments].map(escapeSegment).join('/')}`;
          assert.equal(written(transform({ mask: [path] }), text), text);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('a remove of a present member is the original with exactly that member gone (and erased appended)', () => {
    const member = fc.tuple(ws, keyString, ws, ws, jsonText, ws);
    fc.assert(
      fc.property(
        fc.array(member, { minLength: 1, maxLength: 6 }),
        fc.nat(),
        jsonText,
        fc.array(fc.tuple(keyString, jsonText), { maxLength: 3 }),
        (members, pick, result, siblings) => {
          const target = members[pick % members.length]![1];
          const objText = `{${members.map(([a, k, b, c, v, d]) => `${a}${JSON.stringify(k)}${b}:${c}${v}${d}`).join(',')}}`;
          const others = siblings.filter(([k]) => k !== 'obj');
          const inputText = `{${[...others.map(([k, v]) => `${JSON.stringify(k)}: ${v}`), `"obj" : ${objText}`].join(' , ')}}`;
          const text = `{"decision_id":"d", "input":${inputText}, "result":${result}}`;
          const pointer = `/input/obj/${escapeSegment(target)}`;
          // built from the generated parts: in a container on the path, members that stood next to each other
          // keep the text between them; a change (here: where a member went, and the changed member itself)
          // is joined compactly; every member with the removed key goes (duplicates included)
          const runs: string[] = [];
          members.forEach(([a, k, b, c, v], i) => {
            if (k === target) return;
            const core = `${JSON.stringify(k)}${b}:${c}${v}`;
            const previous = members[i - 1];
            if (runs.length > 0 && previous !== undefined && previous[1] !== target)
              runs[runs.length - 1] += `${previous[5]},${a}${core}`;
            else runs.push(core);
          });
          const objExpected = `{${runs.join(',')}}`;
          const inputExpected = `{${[...(others.length > 0 ? [others.map(([k, v]) => `${JSON.stringify(k)}: ${v}`).join(' , ')] : []), `"obj":${objExpected}`].join(',')}}`;
          const expected = `{"decision_id":"d","input":${inputExpected},"result":${result},"erased":[${JSON.stringify(pointer)}]}`;
          const out = written(transform({ mask: [pointer] }), text);
          assert.equal(out, expected);
          // and, read as JS values, the same as deleting the key from JSON.parse's object
          const parsed = JSON.parse(text) as Decision;
          delete ((parsed.input as Decision).obj as Decision)[target];
          parsed.erased = [pointer];
          assert.deepEqual(JSON.parse(out!), parsed);
        },
      ),
      { numRuns: 500 },
    );
  });

  test('an upsert of a present member changes only its value (its earlier duplicates go)', () => {
    const member = fc.tuple(keyString, jsonText);
    fc.assert(
      fc.property(fc.array(member, { minLength: 1, maxLength: 6 }), fc.nat(), jsonText, (members, pick, result) => {
        const target = members[pick % members.length]![0];
        const text = `{"input":{${members.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}},"result":${result}}`;
        const pointer = `/input/${escapeSegment(target)}`;
        const last = members.map(([k]) => k).lastIndexOf(target);
        const kept = members.flatMap(([k, v], i) => (i === last ? [[k, '"***"']] : k === target ? [] : [[k, v]]));
        const expected = `{"input":{${kept.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}},"result":${result},"masked":[${JSON.stringify(pointer)}]}`;
        assert.equal(written(transform({ mask: [{ op: 'upsert', path: pointer, value: '***' }] }), text), expected);
      }),
      { numRuns: 500 },
    );
  });
});
