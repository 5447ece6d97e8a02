// The API and destination suites again, with every server they start on the PostgreSQL store (`npm test` runs
// this after the SQLite run): SLUICE_TEST_STORE=postgres makes test/helpers/sluice.ts give each server a schema
// of its own, named after its data_dir and this run (t<pid>_...). Those schemas are dropped at the end, and the
// ones of earlier runs that died before dropping theirs are dropped first. Where PostgreSQL cannot be reached,
// this says so in one line and passes: the SQLite run has already run the same suites.
//
//   node scripts/test-postgres.mjs [test files...]   (default: the suites below)
import { spawn } from 'node:child_process';
import process from 'node:process';
import pg from 'pg';

/** The suites that start servers through the API and must pass unchanged on either store. */
const SUITES = [
  'test/api.test.ts',
  'test/tenants.test.ts',
  'test/destinations.test.ts',
  'test/outpost-sdk.test.ts',
  'test/health.test.ts',
  'test/publish-batch.test.ts',
  'test/behaviour-event-delivery.test.ts',
];

const url = process.env.SLUICE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const shownUrl = url.replace(/\/\/[^@]*@/, '//');
const prefix = `t${process.pid}_`;

async function withClient(fn) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops the schemas of this run, or (`stale`) those of runs whose process is gone. */
async function dropSchemas(stale) {
  await withClient(async (client) => {
    const { rows } = await client.query(`SELECT nspname FROM pg_namespace WHERE nspname ~ '^t[0-9]*_[0-9a-f]{16}$'`);
    for (const { nspname } of rows) {
      const owner = /^t([0-9]+)_/.exec(nspname);
      const ours = nspname.startsWith(prefix);
      // t_...: a suite run by hand with SLUICE_TEST_STORE=postgres, which drops nothing itself
      const orphan = owner ? !alive(Number(owner[1])) : true;
      if (stale ? orphan && !ours : ours) await client.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
    }
  });
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

try {
  await withClient((client) => client.query('SELECT 1'));
} catch (err) {
  console.log(`# PostgreSQL runs of the API suites skipped: ${shownUrl} is not reachable (${err.message})`);
  process.exit(0);
}

await dropSchemas(true);
const files = process.argv.length > 2 ? process.argv.slice(2) : SUITES;
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=600000', ...files],
  {
    stdio: 'inherit',
    env: { ...process.env, SLUICE_TEST_STORE: 'postgres', SLUICE_TEST_SCHEMA_PREFIX: prefix },
  },
);
// Ctrl-C reaches the test runner too (same process group); its schemas are dropped once it has stopped.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
const code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await dropSchemas(false);
process.exit(code);
