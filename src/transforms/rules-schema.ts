/**
 * The configuration of decision drop and mask rules, checked once at startup so that a rule that could
 * not work (a bad pointer, an invalid regular expression, two operators in one condition) is a config
 * error naming the rule, never a surprise at runtime.
 *
 * Mask entries follow OPA's `system.log.mask` format (OPA: plugins/logs/mask.go): a JSON pointer string
 * means remove, or `{op: remove|upsert, path, value}`; paths must start with /input, /result or
 * /nd_builtin_cache, like OPA's newMaskRule. Drop rules replace OPA's `system.log.drop` Rego rule with a
 * small condition language (see Condition), and `when` makes a mask entry conditional the way a Rego
 * mask rule body does.
 */
import { z } from 'zod';
import { FIELD_HINT, parseField, parsePointer } from './json-path.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** One test on the decision; exactly one operator per object. */
export type Condition =
  | { field: string; equals: JsonValue }
  | { field: string; in: JsonValue[] }
  | { field: string; prefix: string }
  | { field: string; matches: string }
  | { field: string; exists: boolean }
  | { all: Condition[] }
  | { any: Condition[] }
  | { not: Condition };

export type MaskOp = { op: 'remove' | 'upsert'; path: string; value?: JsonValue; when?: Condition };
/** A JSON pointer (remove) or an operation. */
export type MaskEntry = string | MaskOp;

const FIELD_OPS = ['equals', 'in', 'prefix', 'matches', 'exists'] as const;
const GROUP_OPS = ['all', 'any', 'not'] as const;
const ALL_OPS: readonly string[] = [...FIELD_OPS, ...GROUP_OPS];
const NEEDS_OPERATOR =
  'a condition needs field with one of equals, in, prefix, matches, exists, or one of all, any, not';

export const MASK_ROOTS = ['input', 'result', 'nd_builtin_cache'] as const;
const MASK_PREFIX = 'a mask path must start with /input, /result or /nd_builtin_cache';

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Runs `schema` on `value` and reports its issues (paths relative to here) through `ctx`. */
function delegate<T>(schema: z.ZodType<T>, value: unknown, ctx: z.RefinementCtx): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  for (const issue of result.error.issues) ctx.addIssue({ ...issue } as Parameters<typeof ctx.addIssue>[0]);
  return z.NEVER;
}

const json = z.json();

const field = z.string({ error: `needs the field to test: ${FIELD_HINT}` }).superRefine((f, ctx) => {
  const parsed = parseField(f);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
});

const regex = z.string({ error: 'must be a regular expression (a string)' }).superRefine((pattern, ctx) => {
  try {
    new RegExp(pattern);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${(err as Error).message}` });
  }
});

const conditionList = (op: string) =>
  z
    .array(
      z.lazy(() => condition),
      { error: `${op} takes a list of conditions` },
    )
    .min(1, `${op} needs at least one condition`);

const bySchema: Record<string, z.ZodType<Condition>> = {
  equals: z.strictObject({ field, equals: json }),
  in: z.strictObject({
    field,
    in: z.array(json, { error: 'in takes a list of values' }).min(1, 'in needs at least one value'),
  }),
  prefix: z.strictObject({ field, prefix: z.string({ error: 'prefix must be a string' }) }),
  matches: z.strictObject({ field, matches: regex }),
  exists: z.strictObject({ field, exists: z.boolean({ error: 'exists must be true or false' }) }),
  all: z.strictObject({ all: conditionList('all') }),
  any: z.strictObject({ any: conditionList('any') }),
  not: z.strictObject({ not: z.lazy(() => condition) }),
} as Record<string, z.ZodType<Condition>>;

/**
 * A condition. Parsed by looking at which operator is present first, so that a mistake is reported against
 * that operator's shape (a bad regex, a missing field) rather than as "no union member matched".
 */
export const condition: z.ZodType<Condition, unknown> = z.unknown().transform((value, ctx): Condition => {
  if (!isPlainObject(value)) {
    ctx.addIssue({ code: 'custom', message: `${NEEDS_OPERATOR}, e.g. { field: path, prefix: system/health }` });
    return z.NEVER;
  }
  const ops = Object.keys(value).filter((k) => ALL_OPS.includes(k));
  if (ops.length === 0) {
    ctx.addIssue({ code: 'custom', message: NEEDS_OPERATOR });
    return z.NEVER;
  }
  if (ops.length > 1) {
    ctx.addIssue({
      code: 'custom',
      message: `a condition takes exactly one operator, this one has ${ops.join(' and ')}: combine conditions with all: [...] or any: [...]`,
    });
    return z.NEVER;
  }
  const op = ops[0]!;
  if ((GROUP_OPS as readonly string[]).includes(op) && 'field' in value) {
    ctx.addIssue({
      code: 'custom',
      path: ['field'],
      message: `${op} does not take a field: put field in each condition of ${op}`,
    });
    return z.NEVER;
  }
  return delegate(bySchema[op]!, value, ctx);
});

/** A mask path: a JSON pointer under /input, /result or /nd_builtin_cache, as OPA's newMaskRule requires. */
export const maskPath = z.string({ error: `${MASK_PREFIX}, e.g. /input/password` }).superRefine((p, ctx) => {
  const segments = parsePointer(p);
  if (typeof segments === 'string' && p.startsWith('/')) {
    ctx.addIssue({ code: 'custom', message: segments });
  } else if (typeof segments === 'string' || !(MASK_ROOTS as readonly string[]).includes(segments[0] ?? '')) {
    ctx.addIssue({ code: 'custom', message: `${MASK_PREFIX}, not "${p}"` });
  }
});

const maskOp: z.ZodType<MaskOp> = z
  .strictObject({
    op: z.enum(['remove', 'upsert'], { error: 'op must be remove or upsert' }),
    path: maskPath,
    value: json.optional(),
    when: condition.optional(),
  })
  .superRefine((m, ctx) => {
    if (m.op === 'upsert' && m.value === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: 'an upsert needs a value (what replaces the data, e.g. "***")',
      });
    } else if (m.op === 'remove' && m.value !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: 'a remove takes no value (use op: upsert to replace the data)',
      });
    }
  }) as z.ZodType<MaskOp>;

export const maskEntry: z.ZodType<MaskEntry, unknown> = z.unknown().transform((value, ctx): MaskEntry => {
  if (typeof value === 'string') return delegate(maskPath, value, ctx);
  if (isPlainObject(value)) return delegate(maskOp, value, ctx);
  ctx.addIssue({
    code: 'custom',
    message: 'a mask entry is a JSON pointer such as /input/password, or { op: remove|upsert, path, value, when }',
  });
  return z.NEVER;
});

export const rulesSchema = z.strictObject({
  /** A decision matching any of these conditions is not written. */
  drop: z.array(condition, { error: 'drop takes a list of conditions' }).default([]),
  /** Applied in order to every decision that is kept. */
  mask: z.array(maskEntry, { error: 'mask takes a list of JSON pointers or { op, path, value, when }' }).default([]),
});

export type RulesConfig = z.output<typeof rulesSchema>;
