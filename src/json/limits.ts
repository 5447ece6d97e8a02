/**
 * How deep JSON may nest anywhere Sluice reads it (decisions at /logs, events at /api/v1/publish).
 *
 * Real decisions nest a few dozen levels at most; OPA itself refuses deeper inputs long before this. A bound
 * keeps every later step (rules, key templates, the API's responses) away from stack overflows on hostile
 * input: it is checked by a non-recursive scan before anything builds a tree.
 */
export const MAX_JSON_DEPTH = 1000;
