/**
 * Sluice's receiver-side equivalent of OPA's decision log `drop` and `mask` policies
 * (decision_logs.drop_decision / mask_decision, OPA: plugins/logs/plugin.go Log): rules from the
 * configuration, global ones and then an output's own, turned into one function per output.
 *
 * As in OPA, drop is decided first and on the decision as received; a kept decision is then masked,
 * with every mask entry's `when` evaluated on the decision as received (OPA evaluates its mask rule once,
 * on the unmasked event) and the entries applied in order (global, then output). See mask.ts for the
 * remove/upsert details, conditions.ts for the condition language.
 */
import type { JsonNode } from '../json/source-tree.js';
import { compileCondition } from './conditions.js';
import { parseField, parsePointer } from './json-path.js';
import { applyMasks, compileMask } from './mask.js';
import type { Condition, MaskEntry, RulesConfig } from './rules-schema.js';

/**
 * Takes a decision's source tree and returns the tree to write (the input itself when unchanged, never
 * mutated: its text is then written as it is), or undefined to drop it.
 *
 * `depth`: how deep into a decision the rules read (the most segments of any field or mask path, at least 2
 * with masks, which append to `erased` and `masked`). A tree parsed with that `keepDepth` is all the rules
 * need: what lies deeper is only ever written back as its source text, so it need not be a node per value.
 */
export interface DecisionTransform {
  (decision: JsonNode): JsonNode | undefined;
  readonly depth: number;
}

/**
 * Builds the transform for one output from validated rules (rulesSchema); undefined when neither has any
 * rule, so that callers can skip parsing decisions at all.
 */
export function buildTransform(
  global: RulesConfig | undefined,
  output: RulesConfig | undefined,
): DecisionTransform | undefined {
  const conditions = [...(global?.drop ?? []), ...(output?.drop ?? [])];
  const entries = [...(global?.mask ?? []), ...(output?.mask ?? [])];
  if (conditions.length === 0 && entries.length === 0) return undefined;
  const drops = conditions.map(compileCondition);
  const masks = entries.map(compileMask);
  const depth = Math.max(entries.length > 0 ? 2 : 1, ...conditions.map(conditionDepth), ...entries.map(maskDepth));
  return Object.assign(
    (decision: JsonNode) => {
      for (const drop of drops) if (drop(decision)) return undefined;
      // without masks this is the decision itself, whose text is then written as received
      return applyMasks(masks, decision);
    },
    { depth },
  );
}

/** How many segments deep a condition reads (its field's; the deepest of a combination). */
function conditionDepth(c: Condition): number {
  if ('all' in c) return Math.max(1, ...c.all.map(conditionDepth));
  if ('any' in c) return Math.max(1, ...c.any.map(conditionDepth));
  if ('not' in c) return conditionDepth(c.not);
  const segments = parseField(c.field);
  return typeof segments === 'string' ? 1 : segments.length;
}

/** How many segments deep a mask entry reaches: its path's, or its `when`'s. */
function maskDepth(entry: MaskEntry): number {
  const path = typeof entry === 'string' ? entry : entry.path;
  const segments = parsePointer(path);
  const own = typeof segments === 'string' ? 1 : segments.length;
  return typeof entry === 'string' || entry.when === undefined ? own : Math.max(own, conditionDepth(entry.when));
}
