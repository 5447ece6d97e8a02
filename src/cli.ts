#!/usr/bin/env node
import { Command } from 'commander';
import { ConfigError, loadConfig } from './config/load.js';
import { createLogger } from './observability/logger.js';
import { startServer } from './server.js';
import { VERSION } from './version.js';
import { targetOf } from './sinks/create-sink.js';
import { keyLayout } from './delivery/key-layouts.js';
import type { OutputConfig } from './config/schema.js';


const program = new Command('sluice')
  .description('Durable decision log service for Open Policy Agent: decisions in, batched objects out to S3.')
  .version(VERSION);

program.command('serve')
  .description('Run the service. Without --config it runs on embedded defaults: 127.0.0.1:8181, buffer in ./data, objects in ./data/objects.')
  .option('-c, --config <file>', 'YAML configuration file')
  .addHelpText('after', '\nExamples:\n  sluice serve\n  sluice serve --config sluice.yaml\n  AWS_ACCESS_KEY_ID=... sluice serve -c s3.yaml')
  .action(async (opts: { config?: string }) => {
    const config = readConfigOrExit(opts.config);
    const log = createLogger(config.log.level);
    let server;
    try {
      server = await startServer(config, log);
    } catch (err) {
      log.fatal({ err }, 'cannot start');
      process.exit(1);
    }
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal, timeout_ms: config.shutdown_timeout }, 'stopping: no new requests, flushing open batches');
      const { flushed } = await server.shutdown();
      log.info({ flushed }, flushed ? 'stopped; everything delivered' : 'stopped; undelivered decisions stay buffered for the next start');
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
  });

program.command('check')
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
    const adminKey = api.admin_key ?? process.env.SLUICE_ADMIN_KEY;
    console.log(`  api /api/v1: ${adminKey ? 'admin key set' : 'OPEN (no admin key)'}, topics ${api.topics.length > 0 ? api.topics.join(', ') : 'any'}`);
    for (const m of config.ingest.tenants) {
      console.log(`  decisions ${m.partition ? `posted to /logs/${m.partition}` : 'sent with a mapped token'} -> tenant ${m.tenant} (topic decisions)`);
    }
  });

/** The key a made-up decision would get from an output, so a layout can be checked before it writes. */
function exampleKey(output: OutputConfig): string {
  const timestamp = '2026-05-01T12:34:56.789012345Z';
  const layout = keyLayout(output.key);
  const decision = { decision_id: '4ca636c1-55e4-417a-b1d8-4aceb67960d1', labels: { id: 'opa-1', version: '1.4.0' }, path: 'authz/allow', timestamp };
  const batch = { output: output.name, partition: 'default', hour: '2026-05-01T12', instance: layout.byInstance ? 'opa-1' : null, first: 1, last: layout.perDecision ? 1 : 1000, count: 1000, bytes: 0 };
  return layout.key({ output: output.name, bufferId: '0a1b2c3d', batch, encoding: output, receivedAt: Date.parse(timestamp), decisions: [decision] });
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

await program.parseAsync(process.argv);
