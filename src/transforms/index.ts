/** Decision drop and mask rules with OPA's semantics: the schema for the configuration, and the transform. */
export { rulesSchema, type RulesConfig, type Condition, type MaskEntry, type JsonValue } from './rules-schema.js';
export { buildTransform, type DecisionTransform } from './decision-transform.js';
