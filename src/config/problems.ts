/** What is wrong with a configuration, at the path of the field (`outputs.0.bucket`, `(file)`, `(root)`). */
export interface ConfigProblem {
  path: string;
  message: string;
}

/** A configuration that cannot be used, with every problem found in it. */
export class ConfigError extends Error {
  constructor(
    readonly problems: ConfigProblem[],
    readonly source: string,
  ) {
    super(
      `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n` +
        problems.map((p) => `  ${p.path}: ${p.message}`).join('\n'),
    );
  }
}
