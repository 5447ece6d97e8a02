#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { loadConfig } from './config/load.js';
import { ConfigError } from './config/problems.js';
import { createLogger } from './observability/logger.js';
import { startServer } from './server.js';
import { StartRefusedError } from './buffer/data-dir-lock.js';
import { VERSION } from './version.js';
import { parseWhen, parseWhere } from './query/decisions.js';
import { parseDuration } from './config/units.js';
import { canReadBack, notReadableMessage, READABLE_OUTPUT_TYPES, targetOf } from './sinks/registry.js';
import { keyLayout } from './delivery/key-layouts.js';
import type { OutputConfig } from './config/schema.js';
// The other commands (status, send, query, tail, table) are imported when they run: `serve` would otherwise hold
// their code and libraries (tables, progress bars) for the life of the service.

const program = new Command('sluice')
  .description('Durable decision log service for Open Policy Agent: decisions in, batched objects out to S3.')
  .version(VERSION)
  // commander exits 1 on a usage error, the code that means "invalid" or "refused" here: it throws instead
  // (every command inherits this), and the end of this file exits 2, the documented code for bad arguments
  .exitOverride();

program
  .command('serve')
  .description(
    'Run the service. Without --config it runs on embedded defaults: 127.0.0.1:8181, buffer in ./data, objects in ./data/objects.',
  )
  .option('-c, --config <file>', 'YAML configuration file')
  .option(
    '--accept-buffer-loss',
    "start with a new, empty buffer when data_dir's buffer.sqlite is missing, empty or another one " +
      '(its undelivered decisions are lost); or SLUICE_ACCEPT_BUFFER_LOSS=true',
    false,
  )
  .addHelpText(
    'after',
    '\nExamples:\n  sluice serve\n  sluice serve --config sluice.yaml\n  AWS_ACCESS_KEY_ID=... sluice serve -c s3.yaml',
  )
  .action(async (opts: { config?: string; acceptBufferLoss: boolean }) => {
    const config = readConfigOrExit(opts.config);
    const log = createLogger(config.log.level);
    // A promise nothing handles is a path no one thought through: what it left half done is unknown. Said
    // once, at fatal, with the error, and exit 1 for the supervisor to restart: what was acknowledged is on
    // disk, and a start finds everything from there. (Every known failure, a full disk included, is handled
    // where it happens; none reaches this.)
    process.on('unhandledRejection', (err) => {
      log.fatal({ err }, 'unhandled rejection: exiting (acknowledged data is on disk; a restart goes on from there)');
      process.exit(1);
    });
    let server;
    try {
      // only an explicit yes: commander's .env() would take SLUICE_ACCEPT_BUFFER_LOSS=false as set, hence true
      const acceptBufferLoss =
        opts.acceptBufferLoss || /^(true|1|yes)$/i.test(process.env.SLUICE_ACCEPT_BUFFER_LOSS ?? '');
      server = await startServer(config, log, {
        acceptLoss: acceptBufferLoss,
        serveCommand: `sluice serve${opts.config ? ` --config ${opts.config}` : ''}`,
      });
    } catch (err) {
      // a refusal's message says what to do; anything else is a failure to show with its stack
      log.fatal({ err }, err instanceof StartRefusedError ? err.message : 'cannot start');
      process.exit(1);
    }
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal, timeout_ms: config.shutdown_timeout }, 'stopping: no new requests, flushing open batches');
      // shutdown() keeps to shutdown_timeout itself; this is the backstop should some part of it hang, so a
      // supervisor's SIGTERM always ends the process. What was acknowledged is on disk either way.
      setTimeout(() => {
        log.error(
          { timeout_ms: config.shutdown_timeout },
          'shutdown did not complete within shutdown_timeout + 5 s: exiting anyway; undelivered decisions stay buffered',
        );
        process.exit(1);
      }, config.shutdown_timeout + 5_000).unref();
      const { flushed } = await server.shutdown();
      log.info(
        { flushed },
        flushed ? 'stopped; everything delivered' : 'stopped; undelivered decisions stay buffered for the next start',
      );
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
  });

program
  .command('check')
  .description('Validate a configuration file: prints each problem with the path of its field; exits 1 when invalid.')
  .requiredOption('-c, --config <file>', 'YAML configuration file')
  .addHelpText('after', '\nExamples:\n  sluice check --config sluice.yaml')
  .action((opts: { config: string }) => {
    const config = readConfigOrExit(opts.config);
    console.log(`${opts.config}: ok`);
    console.log(`  listen ${config.listen}, data_dir ${config.data_dir}`);
    for (const o of config.outputs) {
      console.log(`  output ${o.name}: ${targetOf(o)}, key ${o.key}`);
      console.log(`    an example decision's object: ${exampleKey(o)}`);
    }
    const api = config.api;
    console.log(
      `  api /api/v1: ${api.admin_key ? 'admin key set' : 'OPEN (no admin key)'}, topics ${api.topics.length > 0 ? api.topics.join(', ') : 'any'}`,
    );
    for (const m of config.ingest.tenants) {
      console.log(
        `  decisions ${m.partition ? `posted to /logs/${m.partition}` : 'sent with a mapped token'} -> tenant ${m.tenant} (topic decisions)`,
      );
    }
  });

/** The key a made-up decision would get from an output, so a layout can be checked before it writes. */
function exampleKey(output: OutputConfig): string {
  const timestamp = '2026-05-01T12:34:56.789012345Z';
  const layout = keyLayout(output.key);
  const decision = {
    decision_id: '4ca636c1-55e4-417a-b1d8-4aceb67960d1',
    labels: { id: 'opa-1', version: '1.4.0' },
    path: 'authz/allow',
    timestamp,
  };
  const batch = {
    output: output.name,
    partition: 'default',
    hour: '2026-05-01T12',
    instance: layout.byInstance ? 'opa-1' : null,
    first: 1,
    last: layout.perDecision ? 1 : 1000,
    count: 1000,
    bytes: 0,
  };
  return layout.key({
    output: output.name,
    bufferId: '0a1b2c3d',
    batch,
    encoding: output,
    receivedAt: Date.parse(timestamp),
    decisions: [decision],
  });
}

program
  .command('status')
  .description(
    "Show a running Sluice's buffer, store and each output's state (from /ready) as a table. Exit 0 ok, 1 degraded or unavailable, 2 unreachable.",
  )
  .option('-u, --url <url>', 'where Sluice listens', 'http://127.0.0.1:8181')
  .option('--json', 'print /ready as JSON instead of a table', false)
  .option('-t, --token <token>', 'observability.token, when the server sets one (or SLUICE_OBSERVABILITY_TOKEN)')
  .addHelpText('after', '\nExamples:\n  sluice status\n  sluice status --url http://10.0.0.5:8181 --json')
  .action(async (opts: { url: string; json: boolean; token?: string }) => {
    const { status } = await import('./commands/status.js');
    process.exitCode = await status(opts.url, {
      json: opts.json,
      token: opts.token ?? (process.env.SLUICE_OBSERVABILITY_TOKEN || undefined),
    });
  });

program
  .command('send')
  .description(
    'Send decisions from a file (NDJSON or a JSON array, plain or gzip; - for stdin) to Sluice or any OPA decision log service, ' +
      "in OPA's chunks, with OPA's retries. Exit 0 all sent, 1 refused, 2 unreadable input.",
  )
  .argument('<file>', 'the decisions, or - for standard input')
  .option('-u, --url <url>', 'the decision log service (POST <url>/logs)', 'http://127.0.0.1:8181')
  .option('-p, --partition <name>', 'POST to /logs/<name>')
  .option('-t, --token <token>', 'bearer token (or SLUICE_TOKEN)')
  .option('--chunk-bytes <n>', "compressed bytes per request (OPA's upload_size_limit_bytes)", '32768')
  .option('--concurrency <n>', 'requests in flight', '4')
  .option('--retries <n>', 'retries of a request on 429, 5xx and network errors', '10')
  .addHelpText(
    'after',
    '\nExamples:\n  sluice send decisions.ndjson\n  zcat logs.json.gz | sluice send - --url https://logs.example.com --token $TOKEN\n  sluice send export.json --partition replay --chunk-bytes 1048576',
  )
  .action(
    async (
      file: string,
      opts: {
        url: string;
        partition?: string;
        token?: string;
        chunkBytes: string;
        concurrency: string;
        retries: string;
      },
    ) => {
      const { send } = await import('./commands/send.js');
      process.exitCode = await send(file, {
        url: opts.url,
        partition: opts.partition,
        token: opts.token ?? process.env.SLUICE_TOKEN,
        chunkBytes: positiveInt(opts.chunkBytes, '--chunk-bytes'),
        concurrency: positiveInt(opts.concurrency, '--concurrency'),
        retries: positiveInt(opts.retries, '--retries', 0),
        progress: process.stdout.isTTY === true,
      });
    },
  );

const collect = (value: string, previous: string[]) => [...previous, value];

program
  .command('query')
  .description(
    "Read decisions back from where an output wrote them (S3 or file), listing only the keys of the time range the output's key layout allows. " +
      'Exit 0 found, 1 none, 2 bad arguments or unreadable output.',
  )
  .option(
    '-c, --config <file>',
    'the configuration that names the output (default: the embedded defaults, as `sluice serve` without --config)',
  )
  .option('-o, --output <name>', 'the output to read (default: the only s3 or file output, when there is one)')
  .option('--from <time>', 'RFC 3339, or a duration ago (15m, 2h, 7d)', '1h')
  .option('--to <time>', 'RFC 3339, a duration ago, or now', 'now')
  .option('--decision-id <id>', 'only this decision')
  .option('--path <path>', 'only decisions of this policy path (e.g. authz/allow)')
  .option('--where <field=value>', 'only decisions whose field (dotted path) has this value; repeatable', collect, [])
  .option('--format <format>', 'ndjson or table', 'ndjson')
  .addHelpText(
    'after',
    '\nExamples:\n  sluice query -c sluice.yaml -o archive --from 2h\n  sluice query -c sluice.yaml -o archive --from 2026-05-01T00:00:00Z --to 2026-05-02T00:00:00Z --path authz/allow --where result=false --format table\n  sluice query -c sluice.yaml -o archive --from 7d --decision-id 4ca636c1-55e4-417a-b1d8-4aceb67960d1',
  )
  .action(
    async (opts: {
      config?: string;
      output?: string;
      from: string;
      to: string;
      decisionId?: string;
      path?: string;
      where: string[];
      format: string;
    }) => {
      const output = outputOrExit(opts.config, opts.output);
      const from = parseWhen(opts.from);
      const to = parseWhen(opts.to);
      if (from === undefined || to === undefined)
        usage(
          `--from and --to take RFC 3339 times or durations ago (15m, 2h), not "${from === undefined ? opts.from : opts.to}"`,
        );
      if (opts.format !== 'ndjson' && opts.format !== 'table') usage('--format is ndjson or table');
      const filter = {
        from: from!,
        to: to!,
        decisionId: opts.decisionId,
        path: opts.path,
        where: whereOrExit(opts.where),
      };
      const { query } = await import('./commands/query.js');
      process.exitCode = await query(output, filter, {
        format: opts.format as 'ndjson' | 'table',
        progress: process.stderr.isTTY === true,
      }).catch(readFailure);
    },
  );

program
  .command('tail')
  .description(
    'Follow an output (S3 or file): print the decisions of each new object as NDJSON as it lands, until interrupted.',
  )
  .option('-c, --config <file>', 'the configuration that names the output (default: the embedded defaults)')
  .option('-o, --output <name>', 'the output to follow (default: the only s3 or file output, when there is one)')
  .option('--decision-id <id>', 'only this decision')
  .option('--path <path>', 'only decisions of this policy path')
  .option('--where <field=value>', 'only decisions whose field (dotted path) has this value; repeatable', collect, [])
  .option('--interval <duration>', 'how often to look for new objects', '2s')
  .option('--max <n>', 'stop after printing this many decisions')
  .addHelpText(
    'after',
    '\nExamples:\n  sluice tail -c sluice.yaml -o archive\n  sluice tail -c sluice.yaml -o archive --where result=false',
  )
  .action(
    async (opts: {
      config?: string;
      output?: string;
      decisionId?: string;
      path?: string;
      where: string[];
      interval: string;
      max?: string;
    }) => {
      const output = outputOrExit(opts.config, opts.output);
      const intervalMs = parseDuration(opts.interval);
      if (intervalMs === undefined || intervalMs <= 0)
        usage(`--interval takes a duration (500ms, 2s), not "${opts.interval}"`);
      const abort = new AbortController();
      process.once('SIGINT', () => abort.abort());
      process.once('SIGTERM', () => abort.abort());
      const filter = { decisionId: opts.decisionId, path: opts.path, where: whereOrExit(opts.where) };
      const { tail } = await import('./commands/query.js');
      process.exitCode = await tail(output, filter, {
        intervalMs: intervalMs!,
        max: opts.max === undefined ? undefined : positiveInt(opts.max, '--max'),
        signal: abort.signal,
      }).catch(readFailure);
    },
  );

program
  .command('table')
  .description(
    "Print the statement that makes an output's objects a table: Athena's CREATE EXTERNAL TABLE with partition projection over its key layout " +
      "(no MSCK REPAIR needed), or DuckDB's CREATE VIEW over read_parquet / read_json. Exit 0 printed, 2 bad arguments or an output that cannot be queried.",
  )
  .option('-c, --config <file>', 'the configuration that names the output (default: the embedded defaults)')
  .requiredOption('-o, --output <name>', 'the output (s3 for Athena; s3 or file for DuckDB)')
  .option('--engine <engine>', 'athena or duckdb', 'athena')
  .option(
    '--partitions <list>',
    "Athena: the values of the partition column, comma-separated, or 'injected' (default: those the output has written)",
  )
  .option(
    '--since <date>',
    'Athena: the first date partition projection covers, YYYY-MM-DD (default: a year before each query)',
  )
  .addHelpText(
    'after',
    '\nExamples:\n  sluice table -c sluice.yaml -o archive\n  sluice table -c sluice.yaml -o archive --engine duckdb > archive.sql && duckdb -c ".read archive.sql"\n  sluice table -c sluice.yaml -o archive --partitions default,acme --since 2026-01-01',
  )
  .action(async (opts: { config?: string; output: string; engine: string; partitions?: string; since?: string }) => {
    const config = readConfigOrExit(opts.config);
    const output = config.outputs.find((o) => o.name === opts.output);
    if (!output)
      usage(
        `no output named "${opts.output}" in ${opts.config ?? 'the embedded defaults'}; outputs: ${config.outputs.map((o) => o.name).join(', ')}`,
      );
    if (opts.engine !== 'athena' && opts.engine !== 'duckdb') usage('--engine is athena or duckdb');
    if (opts.since !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(opts.since)) usage('--since takes a date, YYYY-MM-DD');
    const partitions =
      opts.partitions === undefined
        ? undefined
        : opts.partitions === 'injected'
          ? ('injected' as const)
          : opts.partitions.split(',').map((p) => p.trim());
    if (Array.isArray(partitions) && !partitions.every((p) => /^[A-Za-z0-9._-]{1,128}$/.test(p)))
      usage('--partitions takes partition names (A-Z a-z 0-9 . _ -) separated by commas, or injected');
    const { table } = await import('./commands/table.js');
    process.exitCode = await table(output!, {
      engine: opts.engine as 'athena' | 'duckdb',
      partitions,
      since: opts.since,
    });
  });

/**
 * The output to read: the one named, or, without -o, the only output of the configuration that can be read back (the
 * embedded defaults' `local` without -c), so that `sluice query` works as `sluice serve` does, with no flags.
 */
function outputOrExit(file: string | undefined, name: string | undefined): OutputConfig {
  const config = readConfigOrExit(file);
  const source = file ?? 'the embedded defaults';
  const readable = config.outputs.filter(canReadBack);
  if (name === undefined) {
    if (readable.length === 1) return readable[0]!;
    usage(
      readable.length === 0
        ? `${source} has no ${READABLE_OUTPUT_TYPES.join(' or ')} output to read back`
        : `${source} has several outputs that can be read back (${readable.map((o) => o.name).join(', ')}): choose one with -o`,
    );
  }
  const output = config.outputs.find((o) => o.name === name);
  if (!output)
    usage(`no output named "${name}" in ${source}; outputs: ${config.outputs.map((o) => o.name).join(', ')}`);
  if (!canReadBack(output!)) usage(notReadableMessage(output!));
  return output!;
}

function whereOrExit(items: string[]): Array<[string, string]> {
  try {
    return parseWhere(items);
  } catch (err) {
    return usage((err as Error).message);
  }
}

function usage(message: string): never {
  console.error(message);
  process.exit(2);
}

function readFailure(err: Error): number {
  console.error(`cannot read the output: ${err.message}`);
  return 2;
}

/** A numeric option, or exit 2 naming it. */
function positiveInt(value: string, name: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    console.error(`${name} must be an integer >= ${min}, not "${value}"`);
    process.exit(2);
  }
  return n;
}

function readConfigOrExit(file: string | undefined) {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
}

/** An error as one line: what a person reads at a terminal is the message, not a stack. */
function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, ' ').trim() || (err instanceof Error ? err.name : 'unknown error');
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // commander has printed its own one-line message (unknown option, missing argument ...) or the help
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  // what no command handled itself: one line, exit 1 (SLUICE_DEBUG=1 shows the stack, for a bug report)
  console.error(`sluice: ${oneLine(err)}`);
  if (process.env.SLUICE_DEBUG) console.error(err);
  process.exit(1);
}
