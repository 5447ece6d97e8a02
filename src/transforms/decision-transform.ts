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
import { applyMasks, compileMask } from './mask.js';
import type { RulesConfig } from './rules-schema.js';

/**
 * Takes a decision's source tree and returns the tree to write (the input itself when unchanged, never
 * mutated: its text is then written as it is), or undefined to drop it.
 */
export type DecisionTransform = (decision: JsonNode) => JsonNode | undefined;

/**
 * Builds the transform for one output from validated rules (rulesSchema); undefined when neither has any
 * rule, so that callers can skip parsing decisions at all.
 */
export function buildTransform(
  global: RulesConfig | undefined,
  output: RulesConfig | undefined,
): DecisionTransform | undefined {
  const drops = [...(global?.drop ?? []), ...(output?.drop ?? [])].map(compileCondition);
  const masks = [...(global?.mask ?? []), ...(output?.mask ?? [])].map(compileMask);
  if (drops.length === 0 && masks.length === 0) return undefined;
  if (masks.length === 0) {
    return (decision) => {
      for (const drop of drops) if (drop(decision)) return undefined;
      return decision;
    };
  }
  return (decision) => {
    for (const drop of drops) if (drop(decision)) return undefined;
    return applyMasks(masks, decision);
  };
}
