/**
 * The source-preserving JSON module (src/json): the parser accepts exactly what JSON.parse accepts and gives
 * the same values, writes an untouched document back byte for byte, never recurses (100,000 levels parse;
 * a depth bound refuses them cleanly); the depth scan for request bodies; answers that embed raw JSON.
 * Pure functions, no process.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  JsonDepthError,
  JsonSyntaxError,
  JsonTooManyValuesError,
  parseJson,
  toText,
  visitMembers,
  toValue,
  withMember,
  withoutMember,
  fromValue,
  type JsonMember,
  type JsonNode,
  type JsonObject,
} from '../src/json/source-tree.js';
import { exceedsDepth } from '../src/json/depth.js';
import { MAX_JSON_DEPTH } from '../src/json/limits.js';
import { RawJson, stringifyWithRaw } from '../src/json/raw-json.js';

const nested = (depth: number, inner = '1') => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;

/** Whether JSON.parse accepts the text. */
function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe('parseJson', () => {
  test('keeps every number and key as written, and the whole text when nothing is edited', () => {
    const text =
      ' {"b":1,"2":2,"n":[12345678901234567890123,9007199254740993,0.10000000000000000555,1E+400,-0.0],"s":"\\u00e9\\n"} ';
    const tree = parseJson(text);
    assert.equal(toText(tree), text.trim());
    assert.deepEqual(
      (tree as JsonObject).members.map((m) => m.src.slice(m.keyStart, m.keyEnd)),
      ['"b"', '"2"', '"n"', '"s"'],
    );
    assert.deepEqual(toValue(tree), JSON.parse(text));
  });

  test('refuses what JSON.parse refuses, with the position', () => {
    for (const bad of [
      '',
      ' ',
      '{',
      '}',
      '{"a":}',
      '{"a" 1}',
      '{"a":1,}',
      '[1,]',
      '[1 2]',
      '01',
      '-',
      '1.',
      '.5',
      '1e',
      '1e+',
      '+1',
      '0x10',
      'tru',
      'nul',
      'NaN',
      'Infinity',
      '"\\x"',
      '"\\u12"',
      '"a',
      '"\u0001"',
      '"\t"',
      '{"a":1}x',
      '[',
      '[[]',
      '{a:1}',
      "'a'",
      '\u00a0[]',
    ]) {
      assert.equal(parses(bad), false, `JSON.parse refuses ${JSON.stringify(bad)}`);
      assert.throws(() => parseJson(bad), JsonSyntaxError, JSON.stringify(bad));
    }
    assert.throws(
      () => parseJson('{"a":1,}'),
      (err: JsonSyntaxError) => err.position === 7 && /position 7/.test(err.message),
    );
  });

  test('is iterative: 100,000 levels parse and write back; a depth bound refuses them', () => {
    const deep = nested(100_000);
    assert.equal(toText(parseJson(deep)), deep);
    assert.throws(() => parseJson(deep, MAX_JSON_DEPTH), JsonDepthError);
    assert.doesNotThrow(() => parseJson(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH));
    assert.throws(() => parseJson(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH), /deeper than 1000 levels/);
    // an edit near the top of a deep document writes the untouched depth as its slice
    const doc = parseJson(`{"a":1,"deep":${deep}}`) as JsonObject;
    assert.equal(toText(withoutMember(doc, 'a')), `{"deep":${deep}}`);
  });

  test('accepts exactly what JSON.parse accepts, with the same values (random texts and mutations of JSON)', () => {
    const almostJson = fc
      .tuple(
        fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
        fc.nat(),
        fc.constantFrom('', ',', ']', '}', '"', '\\', '-', 'e', '0', ' ', '\u0000', 'x'),
        fc.boolean(),
      )
      .map(([text, at, insert, remove]) => {
        const i = at % (text.length + 1);
        return text.slice(0, i) + insert + text.slice(remove ? i + 1 : i);
      });
    fc.assert(
      fc.property(fc.oneof(almostJson, fc.string({ maxLength: 12 }), fc.json()), (text) => {
        let ours: unknown;
        let ok = true;
        try {
          ours = toValue(parseJson(text));
        } catch (err) {
          assert.ok(err instanceof JsonSyntaxError, `only JsonSyntaxError: ${String(err)}`);
          ok = false;
        }
        assert.equal(ok, parses(text), `parseJson and JSON.parse agree on ${JSON.stringify(text)}`);
        if (ok) {
          assert.deepEqual(ours, JSON.parse(text));
          assert.equal(toText(parseJson(text)), text.trim());
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('maxKept bounds the values a tree keeps, counting only those within keepDepth', () => {
    const wide = `{"a":[${'0,'.repeat(99_999)}0],"b":{"c":1,"d":2}}`;
    // every value kept: the zeros count
    assert.throws(
      () => parseJson(wide, Infinity, Infinity, 1000),
      (err: unknown) => {
        assert.ok(err instanceof JsonTooManyValuesError);
        assert.match(err.message, /more than 1,000 values/);
        return true;
      },
    );
    // kept to depth 1 (a and b): the zeros, c and d are text, within a budget of two
    const shallow = parseJson(wide, Infinity, 1, 2) as JsonObject;
    assert.equal(toText(shallow), wide);
    assert.equal((shallow.members[0]!.value as { items: unknown[] }).items.length, 0);
    assert.throws(() => parseJson(wide, Infinity, 1, 1), JsonTooManyValuesError);
    // and within it, the same tree as without a budget
    assert.deepEqual(parseJson('[1,[2,3],{"x":4}]', Infinity, Infinity, 6), parseJson('[1,[2,3],{"x":4}]'));
  });

  test('keepDepth and visitMembers: the same checks and spans, no nodes below the depth kept (random texts and mutations of JSON)', () => {
    // the tree as (type, span, kept children), children dropped below `keep` levels of containers
    const shape = (node: JsonNode, keep: number, depth = 1): unknown => {
      const children =
        node.type === 'object'
          ? node.members.map((m) => [m.keyStart, m.keyEnd, m.escaped, shape(m.value, keep, depth + 1)])
          : node.type === 'array'
            ? node.items.map((item) => shape(item, keep, depth + 1))
            : [];
      return [node.type, node.start, node.end, depth > keep ? [] : children];
    };
    const error = (f: () => unknown): string | undefined => {
      try {
        f();
        return undefined;
      } catch (err) {
        return `${(err as Error).name} ${(err as JsonSyntaxError).position} ${(err as Error).message}`;
      }
    };
    const texts = fc.oneof(
      fc.json({ maxDepth: 5 }),
      fc
        .tuple(fc.json({ maxDepth: 4 }), fc.nat(), fc.constantFrom(',', ']', '}', '"', '\\', '-', '0', '\u0000'))
        .map(
          ([text, at, insert]) => text.slice(0, at % (text.length + 1)) + insert + text.slice(at % (text.length + 1)),
        ),
    );
    fc.assert(
      fc.property(texts, fc.integer({ min: 0, max: 4 }), fc.integer({ min: 1, max: 6 }), (text, keep, max) => {
        const failed = error(() => parseJson(text, max));
        assert.equal(
          error(() => parseJson(text, max, keep)),
          failed,
          `the same error for ${JSON.stringify(text)}`,
        );
        if (failed === undefined) {
          const shallow = parseJson(text, max, keep);
          assert.deepEqual(shape(shallow, keep), shape(parseJson(text, max), keep));
          assert.equal(toText(shallow), text.trim());
        }
      }),
      { numRuns: 2000 },
    );
    // visitMembers: the root's members one by one, each value a span whose containers keep nothing
    fc.assert(
      fc.property(texts, (text) => {
        const failed = error(() => parseJson(text));
        const visited: JsonMember[] = [];
        assert.equal(
          error(() => visitMembers(text, (m) => visited.push(m))),
          failed,
          JSON.stringify(text),
        );
        if (failed !== undefined) return;
        const full = parseJson(text);
        const members = full.type === 'object' ? full.members : [];
        assert.deepEqual(
          visited.map((m) => [m.keyStart, m.keyEnd, m.escaped, shape(m.value, 1, 2)]),
          members.map((m) => [m.keyStart, m.keyEnd, m.escaped, shape(m.value, 1, 2)]),
        );
        const root = visitMembers(text, () => {});
        assert.deepEqual([root.type, root.start, root.end], [full.type, full.start, full.end]);
      }),
      { numRuns: 2000 },
    );
  });

  test('edits share untouched nodes and never change the tree they start from', () => {
    const tree = parseJson('{"a":{"x":1},"b":[1E+400],"a":{"y":2}}') as JsonObject;
    const before = toText(tree);
    const edited = withMember(tree, 'a', fromValue('z'));
    assert.equal(toText(edited), '{"b":[1E+400],"a":"z"}', 'the last duplicate takes the value, the earlier one goes');
    assert.equal(edited.members[0]!.value, tree.members[1]!.value);
    assert.equal(
      toText(withMember(tree, 'c', fromValue({ d: null }))),
      '{"a":{"x":1},"b":[1E+400],"a":{"y":2},"c":{"d":null}}',
    );
    assert.equal(withoutMember(tree, 'nothing'), tree);
    assert.equal(toText(tree), before);
  });
});

describe('exceedsDepth (the scan before JSON.parse)', () => {
  test('counts nesting, not brackets inside strings', () => {
    assert.equal(exceedsDepth(nested(MAX_JSON_DEPTH)), false);
    assert.equal(exceedsDepth(nested(MAX_JSON_DEPTH + 1)), true);
    assert.equal(exceedsDepth(`{"a":${nested(999)}}`), false);
    assert.equal(exceedsDepth(`{"a":${nested(1000)}}`), true);
    assert.equal(
      exceedsDepth(`{"s":"${'['.repeat(5000)}\\"${'{'.repeat(5000)}"}`),
      false,
      'brackets in strings, an escaped quote',
    );
    assert.equal(exceedsDepth('[[[', 2), true);
    assert.equal(exceedsDepth('"never ends [[[[', 2), false);
    assert.equal(exceedsDepth(nested(100_000)), true);
  });

  test('agrees with the parser on JSON texts', () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 6 }), fc.integer({ min: 0, max: 7 }), (text, max) => {
        let tooDeep = false;
        try {
          parseJson(text, max);
        } catch (err) {
          assert.ok(err instanceof JsonDepthError);
          tooDeep = true;
        }
        assert.equal(exceedsDepth(text, max), tooDeep);
      }),
      { numRuns: 500 },
    );
  });
});

describe('stringifyWithRaw', () => {
  test('is JSON.stringify, with raw parts written as they are', () => {
    const value = { a: [1, 'x', null, undefined, { b: true }], c: undefined, d: new Date(0), e: {}, f: [], g: 'é"\n' };
    assert.equal(stringifyWithRaw(value), JSON.stringify(value));
    const raw = '{"n":12345678901234567890123,"2":-0.0,"b":1E+400}';
    assert.equal(
      stringifyWithRaw({ models: [{ id: 'e1', data: new RawJson(raw) }], next: null }),
      `{"models":[{"id":"e1","data":${raw}}],"next":null}`,
    );
    assert.equal(
      stringifyWithRaw([new RawJson('1E+400'), new RawJson(nested(100_000))]),
      `[1E+400,${nested(100_000)}]`,
    );
  });

  test('matches JSON.stringify on random values', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        assert.equal(stringifyWithRaw(v), JSON.stringify(v));
      }),
      { numRuns: 500 },
    );
  });
});
