/**
 * The control plane's two secrets as an operator gives them: `api.jwt_secret` and `api.encryption_key` from the
 * config or from SLUICE_JWT_SECRET / SLUICE_ENCRYPTION_KEY (the config wins), generated into data_dir when
 * neither is set; tenant tokens across restarts, expired tokens, and credentials stored under another key.
 * Against the real `sluice serve` process and s3rver (which checks the access key id), on 127.0.0.1 only.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { jwtVerify, SignJWT } from 'jose';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { ApiClient, assertError, decodeJwt } from './helpers/api.js';

const ADMIN = 'api-secrets-admin';
const WAIT_MS = 20_000;
/** Nothing of the environment of whoever runs the tests reaches the server unless a test sets it. */
const CLEAN_ENV: NodeJS.ProcessEnv = {
  SLUICE_ADMIN_KEY: undefined,
  SLUICE_JWT_SECRET: undefined,
  SLUICE_ENCRYPTION_KEY: undefined,
};

const cleanups: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

function dir(): string {
  const d = tempDir('sluice-secrets-');
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function startS3(buckets: string[]): Promise<TestS3> {
  const s3 = new TestS3(buckets);
  await s3.start();
  cleanups.push(async () => {
    await s3.stop().catch(() => {});
    rmSync(s3.directory, { recursive: true, force: true });
  });
  return s3;
}

async function start(
  dataDir: string,
  api: Record<string, unknown>,
  env: NodeJS.ProcessEnv = {},
): Promise<SluiceProcess> {
  const sluice = new SluiceProcess({
    config: {
      data_dir: dataDir,
      outputs: [],
      shutdown_timeout: '2s',
      api: {
        destinations: { allowed_endpoints: ['127.0.0.1/32'] },
        retry: { initial_backoff: '100ms', max_backoff: '300ms' },
        ...api,
      },
    },
    env: { ...CLEAN_ENV, ...env },
  });
  cleanups.push(() => sluice.kill9());
  await sluice.start();
  return sluice;
}

async function putTenant(api: ApiClient, id: string): Promise<void> {
  const res = await api.put(`/tenants/${id}`, {});
  assert.ok(res.status === 201 || res.status === 200, `PUT /tenants/${id}: ${res.status} ${res.text}`);
}

async function tokenOf(admin: ApiClient, tenant: string): Promise<string> {
  const res = await admin.get(`/tenants/${tenant}/token`);
  assert.equal(res.status, 200, res.text);
  return res.body.token as string;
}

/** A tenant token as Sluice issues them (sub, gen, exp, issuer outpost), signed with `secret`. */
function sign(secret: string, tenant: string, gen: number, exp: number | string = '1h'): Promise<string> {
  return new SignJWT({ gen })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('outpost')
    .setSubject(tenant)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(secret));
}

async function publishAndWaitForObject(
  sluice: SluiceProcess,
  admin: ApiClient,
  s3: TestS3,
  bucket: string,
  tenant: string,
  data: Record<string, unknown>,
): Promise<string> {
  const res = await admin.post('/publish', { tenant_id: tenant, topic: 'orders', data });
  assert.equal(res.status, 202, res.text);
  const id = res.body.id as string;
  await sluice.until(
    `event ${id} in the bucket`,
    async () => (await s3.keys(bucket)).some((k) => k.endsWith(`_${id}.json`)),
    WAIT_MS,
  );
  return id;
}

function destinationBody(s3: TestS3, bucket: string): Record<string, unknown> {
  return {
    type: 'aws_s3',
    topics: ['orders'],
    config: { bucket, region: 'us-east-1', endpoint: s3.endpoint },
    credentials: { key: S3_KEY, secret: S3_SECRET },
  };
}

// ---------------------------------------------------------------------------------------------------------------

test('SLUICE_ADMIN_KEY, SLUICE_JWT_SECRET and SLUICE_ENCRYPTION_KEY are used when the config leaves them out; the config wins over them', async () => {
  const s3 = await startS3(['env-keys']);
  const dataDir = dir();
  const env = {
    SLUICE_ADMIN_KEY: 'admin-from-env',
    SLUICE_JWT_SECRET: 'jwt-from-env',
    SLUICE_ENCRYPTION_KEY: 'encryption-from-env',
  };
  let sluice = await start(dataDir, {}, env);
  let admin = new ApiClient(sluice.url, 'admin-from-env');
  assertError(await admin.as(undefined).get('/tenants'), 401, 'the admin key from the environment is required');
  await putTenant(admin, 'acme');
  const issued = await tokenOf(admin, 'acme');
  const { payload } = await jwtVerify(issued, new TextEncoder().encode('jwt-from-env'), { issuer: 'outpost' });
  assert.equal(payload.sub, 'acme', 'the issued token is signed with SLUICE_JWT_SECRET');
  const gen = decodeJwt(issued).payload.gen as number;
  assert.equal(
    (await admin.as(await sign('jwt-from-env', 'acme', gen)).get('/tenants/acme')).status,
    200,
    'a token signed with SLUICE_JWT_SECRET is accepted',
  );
  assertError(
    await admin.as(await sign('another-secret', 'acme', gen)).get('/tenants/acme'),
    401,
    'one signed with another secret',
  );
  assert.ok(!existsSync(path.join(dataDir, 'secrets', 'jwt_secret')), 'no jwt_secret generated into data_dir');
  assert.ok(!existsSync(path.join(dataDir, 'secrets', 'encryption_key')), 'no encryption_key generated into data_dir');
  assert.ok(
    !sluice.logLines().some((l) => /encryption_key is not set/.test(l.msg ?? '')),
    'no warning about a generated encryption key',
  );

  const create = await admin.post('/tenants/acme/destinations', destinationBody(s3, 'env-keys'));
  assert.equal(create.status, 201, create.text);
  await publishAndWaitForObject(sluice, admin, s3, 'env-keys', 'acme', { n: 1 });

  // the same environment after a restart: the same secrets, so the token and the stored credentials still work
  await sluice.stop();
  sluice = await start(dataDir, {}, env);
  admin = new ApiClient(sluice.url, 'admin-from-env');
  assert.equal((await admin.as(issued).get('/tenants/acme')).status, 200, 'a token issued before the restart');
  await publishAndWaitForObject(sluice, admin, s3, 'env-keys', 'acme', { n: 2 });

  // the config's values win over the environment's
  await sluice.stop();
  sluice = await start(
    dataDir,
    { admin_key: ADMIN, jwt_secret: 'jwt-from-config', encryption_key: 'encryption-from-env' },
    env,
  );
  admin = new ApiClient(sluice.url, ADMIN);
  assertError(
    await admin.as('admin-from-env').get('/tenants'),
    401,
    'SLUICE_ADMIN_KEY no longer counts once api.admin_key is set',
  );
  assertError(
    await admin.as(issued).get('/tenants/acme'),
    401,
    'a token signed with SLUICE_JWT_SECRET, once api.jwt_secret is set',
  );
  const fromConfig = await tokenOf(admin, 'acme');
  await jwtVerify(fromConfig, new TextEncoder().encode('jwt-from-config'), { issuer: 'outpost' });
  assert.equal((await admin.as(fromConfig).get('/tenants/acme')).status, 200);
  await sluice.stop();
});

test('tenant tokens: an expired one is 401 saying so; without jwt_secret the generated one is kept in data_dir, so tokens outlive a restart', async () => {
  const dataDir = dir();
  let sluice = await start(dataDir, { admin_key: ADMIN });
  let admin = new ApiClient(sluice.url, ADMIN);
  await putTenant(admin, 'acme');
  const issued = await tokenOf(admin, 'acme');
  const secretFile = path.join(dataDir, 'secrets', 'jwt_secret');
  assert.ok(existsSync(secretFile), 'without api.jwt_secret a secret is generated into data_dir/secrets');
  const secret = readFileSync(secretFile, 'utf8').trim();
  await jwtVerify(issued, new TextEncoder().encode(secret), { issuer: 'outpost' });
  const gen = decodeJwt(issued).payload.gen as number;

  const expired = await admin
    .as(await sign(secret, 'acme', gen, Math.floor(Date.now() / 1000) - 60))
    .get('/tenants/acme');
  assertError(expired, 401, 'a token past its exp');
  assert.match(String(expired.body.message), /expired/, `the answer says the token expired: ${expired.text}`);
  assert.equal(
    (await admin.as(await sign(secret, 'acme', gen)).get('/tenants/acme')).status,
    200,
    'the same token, not expired, is accepted',
  );
  const noExp = await new SignJWT({ gen })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer('outpost')
    .setSubject('acme')
    .sign(new TextEncoder().encode(secret));
  assertError(await admin.as(noExp).get('/tenants/acme'), 401, 'a token without exp');

  await sluice.stop();
  sluice = await start(dataDir, { admin_key: ADMIN });
  admin = new ApiClient(sluice.url, ADMIN);
  assert.equal(readFileSync(secretFile, 'utf8').trim(), secret, 'the generated secret is read back, not made again');
  assert.equal(
    (await admin.as(issued).get('/tenants/acme')).status,
    200,
    'a token issued before the restart is accepted after it',
  );
  await sluice.stop();
});

test('another encryption_key than the credentials were stored with: they are never used nor shown, and nothing is lost; the right key delivers', async () => {
  const s3 = await startS3(['wrong-key']);
  const dataDir = dir();
  let sluice = await start(dataDir, { admin_key: ADMIN, encryption_key: 'the-right-key' });
  let admin = new ApiClient(sluice.url, ADMIN);
  await putTenant(admin, 'acme');
  const create = await admin.post('/tenants/acme/destinations', destinationBody(s3, 'wrong-key'));
  assert.equal(create.status, 201, create.text);
  const destinationId = create.body.id as string;
  await publishAndWaitForObject(sluice, admin, s3, 'wrong-key', 'acme', { n: 1 });
  // an event left pending at the stop: S3 is gone, so its delivery waits for the next start
  await s3.stop();
  const pending = await admin.post('/publish', { tenant_id: 'acme', topic: 'orders', data: { n: 2 } });
  assert.equal(pending.status, 202, pending.text);
  const pendingId = pending.body.id as string;
  await sluice.stop();
  await s3.start();

  sluice = await start(dataDir, { admin_key: ADMIN, encryption_key: 'a-wrong-key' });
  admin = new ApiClient(sluice.url, ADMIN);
  const listed = await admin.get('/tenants/acme/destinations');
  assertError(listed, 500, 'the destinations cannot be read with the wrong key');
  assert.match(
    String(listed.body.message),
    /api\.encryption_key is not the key they were stored with/,
    'the answer names the setting',
  );
  await sluice.until(
    'an error naming api.encryption_key',
    () => sluice.logLines().some((l) => (l.level ?? 0) >= 50 && JSON.stringify(l).includes('api.encryption_key')),
    WAIT_MS,
  );
  const keys = await s3.keys('wrong-key');
  assert.ok(
    !keys.some((k) => k.endsWith(`_${pendingId}.json`)),
    'the pending event was not delivered with undecryptable credentials',
  );
  for (const text of [listed.text, sluice.output])
    assert.ok(!text.includes(S3_SECRET), 'no credential shown, nor a wrongly decrypted one');
  await sluice.stop();

  // the right key again: the pending event is delivered, and the destination reads as before
  sluice = await start(dataDir, { admin_key: ADMIN, encryption_key: 'the-right-key' });
  admin = new ApiClient(sluice.url, ADMIN);
  await sluice.until(
    'the pending event in the bucket',
    async () => (await s3.keys('wrong-key')).some((k) => k.endsWith(`_${pendingId}.json`)),
    WAIT_MS,
  );
  const again = await admin.get(`/tenants/acme/destinations/${destinationId}`);
  assert.equal(again.status, 200, again.text);
  assert.match(String(again.body.credentials?.key), /\*{4}$/, `the stored access key, masked: ${again.text}`);
  assert.ok(!again.text.includes(S3_SECRET), 'never in plain text');
  await sluice.stop();
});
