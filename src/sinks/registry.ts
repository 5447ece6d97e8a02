/**
 * The output and destination types Sluice has: one line each. Everything else about a type is in its folder
 * (README "Architecture", "Sink providers"); the config schema, `sluice check`, the server, `sluice query` and
 * the console find it here.
 */
import type { DestinationType } from './destination-types.js';
import type { OutputProvider, SharedOutputConfig } from './provider.js';
import type { ObjectLocation, OutputObjects, Sink } from './types.js';
import { s3Output } from './s3/provider.js';
import { fileOutput } from './file/provider.js';
import { consoleOutput } from './console/provider.js';
import { httpOutput } from './http/provider.js';
import { serviceOutput } from './service/provider.js';
import { awsS3 } from './aws-s3/destination-type.js';

/** The output types (`outputs[].type`), in the order an unknown type's message lists them. */
export const OUTPUT_PROVIDERS = [s3Output, fileOutput, consoleOutput, httpOutput, serviceOutput] as const;

/** The destination types tenants can create, by their `type`. */
export const DESTINATION_TYPES: ReadonlyMap<string, DestinationType> = new Map([awsS3].map((t) => [t.type, t]));

/** An output's config as the registry takes it (config/schema.ts's OutputConfig is one). */
type AnyOutput = SharedOutputConfig & { type: string };

/** The output types whose objects can be read back: `s3` and `file`. */
export const READABLE_OUTPUT_TYPES: readonly string[] = OUTPUT_PROVIDERS.filter((p) => p.reader).map((p) => p.type);

function providerOf(output: AnyOutput): OutputProvider {
  const provider: OutputProvider | undefined = OUTPUT_PROVIDERS.find((p) => p.type === output.type);
  // the config schema admits only the types listed above
  if (!provider) throw new Error(`output ${output.name} has type ${output.type}, which no provider has`);
  return provider;
}

export function createSink(output: AnyOutput): Sink {
  return providerOf(output).createSink(output);
}

/** Where an output writes, for `sluice check` and logs, without making its client; URLs without their secrets. */
export function targetOf(output: AnyOutput): string {
  return providerOf(output).target(output);
}

export function canReadBack(output: AnyOutput): boolean {
  return providerOf(output).reader !== undefined;
}

/** Why an output cannot be read back, as `sluice query` and the console say it. */
export function notReadableMessage(output: AnyOutput): string {
  return `output ${output.name} is of type ${output.type}: only ${READABLE_OUTPUT_TYPES.join(' and ')} outputs can be read back`;
}

/** Lists and reads what an output wrote; throws for a type that cannot be read back. */
export function outputObjects(output: AnyOutput): OutputObjects {
  const reader = providerOf(output).reader;
  if (!reader) throw new Error(notReadableMessage(output));
  return reader(output);
}

/** Where a query engine reads an output's objects (`sluice table`), or undefined for a type it cannot read. */
export function locationOf(output: AnyOutput): ObjectLocation | undefined {
  return providerOf(output).location?.(output);
}
