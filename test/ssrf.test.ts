/**
 * Destinations cannot reach the operator's network (server-side request forgery), against the real
 * `sluice serve` process, s3rver and small HTTP servers, all on 127.0.0.1:
 * - every refused address form and scheme is a 422 naming config.endpoint, at create and at PATCH, for a
 *   tenant token and for the admin key; bucket names are S3 bucket names;
 * - api.destinations.allowed_endpoints opens exactly what it lists;
 * - the check is made again when connecting (the guard's lookup and agents, tested directly), so an allowed
 *   name that resolves to an address nobody allowed is refused at connect, retries included;
 * - key templates cannot produce dot segments, empty segments or a leading "/": failed, not retried, not sent;
 * - moving a destination (endpoint, bucket, region) drops its stored credentials;
 * - the delivery log never carries what the remote end answered.
 *
 * No test lets a delivery run towards a non-loopback address: the non-loopback endpoints here are refused at
 * validation, or accepted on a topic nothing publishes to and deleted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Socket } from 'node:net';
import { rmSync } from 'node:fs';
import type { LookupAddress } from 'node:dns';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { deliveryStatus, OutpostApi } from './helpers/outpost.js';
import { ENDPOINT_NOT_ALLOWED, EndpointGuard } from '../src/sinks/endpoint-guard.js';
import { configSchema } from '../src/config/schema.js';

const ADMIN_KEY = 'ssrf-admin-key';
/** A topic no test publishes to: destinations that name non-loopback places are on it. */
const NEVER = 'never-published';
const WAIT_MS = 20_000;

/** Endpoints that must be refused by default, as a tenant might write them. */
const REFUSED_ADDRESSES = [
  'http://169.254.169.254/latest/meta-data/', // cloud metadata (IPv4)
  'http://[fd00:ec2::254]/', // cloud metadata (IPv6, unique local)
  'http://[fe80::a9fe:a9fe]/', // link-local IPv6
  'http://10.0.0.1/',
  'http://172.16.0.1/',
  'http://192.168.1.1/', // RFC 1918
  'http://127.0.0.1:6379/',
  'http://127.0.0.2/',
  'http://[::1]:9000/', // loopback
  'http://100.64.0.1/', // carrier-grade NAT
  'http://0.0.0.0:9000/',
  'http://0.1.2.3/',
  'http://[::]/', // unspecified, 0.0.0.0/8
  'http://224.0.0.1/',
  'http://[ff02::1]/',
  'http://255.255.255.255/', // multicast, broadcast
  'http://240.0.0.1/',
  'http://192.0.2.1/', // reserved
  'http://[fc00::1]/', // unique local
  'http://[::ffff:127.0.0.1]/',
  'http://[::ffff:169.254.169.254]/', // IPv4-mapped
  'http://[64:ff9b::a9fe:a9fe]/', // NAT64
  'http://[2002:a9fe:a9fe::1]/', // 6to4
  'http://[2001::a9fe:a9fe]/', // Teredo
  'http://[::7f00:1]/', // IPv4-compatible (deprecated)
  'http://2130706433:18281/',
  'http://0x7f000001/',
  'http://0x7f.0.0.1/',
  'http://0177.0.0.1/',
  'http://127.1/', // other spellings of 127.0.0.1
  'http://134744072/', // a decimal spelling, even of a public address
  'http://localhost:9000/',
  'http://localhost../',
  'http://sub.localhost/',
  'http://minio:9000/',
  'http://metadata.google.internal/',
  'http://nas.local/', // local names
  'http://user:password@s3.example.com/', // user info
];

const REFUSED_SCHEMES = [
  'file:///etc/passwd',
  'gopher://127.0.0.1:6379/_INFO',
  'ftp://s3.example.com/',
  'ws://s3.example.com/',
  'dict://127.0.0.1:11211/',
];

const BAD_BUCKETS = [
  'ab',
  'a'.repeat(64),
  'Internal-Api',
  'internal_api',
  'internal-api/..',
  '..',
  'a..b',
  'a.-b',
  '-abc',
  'abc-',
  '192.168.1.1',
  'xn--abc',
  'sthree-abc',
  'abc-s3alias',
];

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.reverse())
    await Promise.resolve()
      .then(c)
      .catch(() => {});
});

/** One request a LocalServer received. */
interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** A tiny HTTP server on 127.0.0.1 that records what it receives and answers as told. */
class LocalServer {
  readonly received: Received[] = [];
  connections = 0;
  private readonly sockets = new Set<Socket>();
  private readonly server: http.Server;

  constructor(answer: (req: http.IncomingMessage) => { status: number; type: string; body: string }) {
    this.server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        this.received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
        const { status, type, body } = answer(req);
        res.writeHead(status, { 'content-type': type });
        res.end(body);
      });
    });
    this.server.on('connection', (s: Socket) => {
      this.connections++;
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => this.stop());
    return this;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function startSluice(allowed: string[] | undefined): Promise<{ sluice: SluiceProcess; admin: OutpostApi }> {
  const dir = tempDir('sluice-ssrf-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const sluice = new SluiceProcess({
    config: {
      data_dir: dir,
      outputs: [],
      shutdown_timeout: '2s',
      log: { level: 'debug' },
      api: {
        admin_key: ADMIN_KEY,
        retry: { max_retries: 1, initial_backoff: '50ms', max_backoff: '100ms' },
        ...(allowed ? { destinations: { allowed_endpoints: allowed } } : {}),
      },
    },
    env: { SLUICE_ADMIN_KEY: undefined, SLUICE_JWT_SECRET: undefined, SLUICE_ENCRYPTION_KEY: undefined },
  });
  cleanups.push(() => sluice.kill9());
  await sluice.start();
  return { sluice, admin: new OutpostApi(sluice.url, ADMIN_KEY) };
}

async function tenantClient(admin: OutpostApi, tenant: string): Promise<OutpostApi> {
  const put = await admin.putTenant(tenant);
  assert.ok(put.status === 201 || put.status === 200, put.text);
  const { token } = await admin.expect<{ token: string }>(200, 'GET', `/tenants/${tenant}/token`);
  return new OutpostApi(admin.baseUrl, token);
}

function destination(
  endpoint: string | undefined,
  over: {
    bucket?: string;
    topics?: string[];
    config?: Record<string, unknown>;
    credentials?: Record<string, string>;
  } = {},
): Record<string, unknown> {
  return {
    type: 'aws_s3',
    topics: over.topics ?? [NEVER],
    config: {
      bucket: over.bucket ?? 'events',
      region: 'us-east-1',
      ...(endpoint === undefined ? {} : { endpoint }),
      ...over.config,
    },
    credentials: over.credentials ?? { key: S3_KEY, secret: S3_SECRET },
  };
}

/** Asserts the project's 422 shape with a message about `field` among its data. */
function assert422(res: { status: number; body: any; text: string }, field: string, what: string): string {
  assert.equal(res.status, 422, `${what}: expected 422, got ${res.status}: ${res.text}`);
  assert.equal(res.body?.message, 'validation error', `${what}: ${res.text}`);
  assert.ok(Array.isArray(res.body?.data), `${what}: data lists the problems: ${res.text}`);
  const message = (res.body.data as string[]).find((m) => m.startsWith(`${field} `) || m.startsWith(`${field}:`));
  assert.ok(message, `${what}: a message names ${field}: ${res.text}`);
  return message!;
}

/** Waits until the event's delivery to the destination is no longer pending; returns the event. */
async function settled(sluice: SluiceProcess, api: OutpostApi, eventId: string, destinationId: string): Promise<any> {
  let event: any;
  await sluice.until(
    `event ${eventId} settled at ${destinationId}`,
    async () => {
      event = await api.event(eventId);
      const status = deliveryStatus(event, destinationId);
      return status === 'success' || status === 'failed';
    },
    WAIT_MS,
  );
  return event;
}

describe('the connect-time guard, called directly', () => {
  const lookup = (guard: EndpointGuard, host: string, all: boolean) =>
    new Promise<{ err: NodeJS.ErrnoException | null; addresses: LookupAddress[] }>((resolve) => {
      guard.lookup(host, { all }, (err, address, family) => {
        resolve({ err, addresses: err ? [] : Array.isArray(address) ? address : [{ address, family: family ?? 0 }] });
      });
    });

  test('a host name resolving only to refused addresses (localhost) is refused, also when the name itself is allowed', async () => {
    for (const allowed of [[], ['localhost']]) {
      for (const all of [false, true]) {
        const { err } = await lookup(new EndpointGuard(allowed), 'localhost', all);
        assert.equal(
          err?.code,
          ENDPOINT_NOT_ALLOWED,
          `localhost with allowed_endpoints ${JSON.stringify(allowed)}, all=${all}: ${err?.message}`,
        );
        assert.ok(
          !/127\.0\.0\.1|::1/.test(err!.message),
          `the refusal does not tell what the name resolves to: ${err!.message}`,
        );
      }
    }
  });

  test('an allowed range lets exactly its addresses through the lookup', async () => {
    for (const all of [false, true]) {
      const { err, addresses } = await lookup(new EndpointGuard(['127.0.0.1/32']), 'localhost', all);
      assert.equal(err, null, `localhost resolves to 127.0.0.1 here: ${err?.message}`);
      assert.deepEqual(
        addresses.map((a) => a.address),
        ['127.0.0.1'],
        'only the allowed address is handed to the socket (::1, if localhost has it, is left out)',
      );
    }
    const { err } = await lookup(new EndpointGuard(['127.0.0.2/32']), 'localhost', true);
    assert.equal(err?.code, ENDPOINT_NOT_ALLOWED, 'a neighbouring address opens nothing');
  });

  test('address classification: refused forms, and what the allow-list opens', () => {
    const guard = new EndpointGuard();
    const refused = [
      '169.254.169.254',
      'fd00:ec2::254',
      'fe80::1',
      'fe80::1%eth0',
      '10.0.0.1',
      '172.31.255.255',
      '192.168.0.1',
      '127.0.0.1',
      '127.255.255.254',
      '::1',
      '100.64.0.1',
      '0.0.0.0',
      '0.255.255.255',
      '::',
      '224.0.0.251',
      'ff02::fb',
      '255.255.255.255',
      '240.0.0.1',
      '198.18.0.1',
      'fc00::1',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      '64:ff9b::a9fe:a9fe',
      '2002:7f00:1::',
      '2001::1',
      '::7f00:1',
      'not-an-address',
    ];
    for (const a of refused) assert.ok(guard.addressRefusal(a), `${a} is refused`);
    // classification only: nothing connects to these
    for (const a of ['93.184.216.34', '2606:4700:4700::1111'])
      assert.equal(guard.addressRefusal(a), undefined, `${a} is a public address`);

    const open = new EndpointGuard(['127.0.0.1/32', '10.1.0.0/16', 'fd00:ec2::/64', 'minio.example.com']);
    assert.equal(open.addressRefusal('127.0.0.1'), undefined);
    assert.ok(open.addressRefusal('127.0.0.2'), '127.0.0.2 is outside 127.0.0.1/32');
    assert.equal(open.addressRefusal('10.1.200.3'), undefined);
    assert.ok(open.addressRefusal('10.2.0.1'));
    assert.equal(open.addressRefusal('fd00:ec2::254'), undefined);
    assert.ok(open.addressRefusal('::ffff:127.0.0.1'), 'an IPv4-mapped form is not the listed IPv4 address');
    assert.ok(open.addressRefusal('169.254.169.254'), 'a listed name opens no address');
  });

  test('the guarded agents refuse IP literals before connecting, and check names through the lookup', async () => {
    const server = await new LocalServer(() => ({ status: 200, type: 'text/plain', body: 'ok' })).start();
    const get = (agent: http.Agent, host: string) =>
      new Promise<NodeJS.ErrnoException | number>((resolve) => {
        const req = http.request({ host, port: server.port, path: '/', agent }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', (err) => resolve(err));
        req.end();
      });
    const closed = new EndpointGuard(['localhost']).agents();
    cleanups.push(() => closed.httpAgent.destroy());
    for (const host of ['127.0.0.1', 'localhost']) {
      const result = await get(closed.httpAgent, host);
      assert.equal((result as NodeJS.ErrnoException).code, ENDPOINT_NOT_ALLOWED, `${host}: ${String(result)}`);
    }
    assert.equal(server.connections, 0, 'no connection was opened');

    const open = new EndpointGuard(['127.0.0.1/32']).agents();
    cleanups.push(() => open.httpAgent.destroy());
    assert.equal(await get(open.httpAgent, '127.0.0.1'), 200);
    assert.equal(await get(open.httpAgent, 'localhost'), 200, 'a name resolving to an allowed address connects');
    assert.equal(server.received.length, 2);
  });

  test('allowed_endpoints entries are checked when the config is read', () => {
    const parse = (allowed: unknown[]) =>
      configSchema.safeParse({ api: { destinations: { allowed_endpoints: allowed } } });
    assert.ok(
      parse([
        '127.0.0.1/32',
        '10.0.0.0/8',
        '::1',
        'fd00::/8',
        '127.0.0.1',
        'minio.example.com',
        'localhost',
        'MinIO.Example.com.',
      ]).success,
    );
    for (const bad of ['10/8', '2130706433', '0x7f.1', 'not a host', 'http://minio:9000', '10.0.0.0/33', '']) {
      const result = parse([bad]);
      assert.ok(!result.success, `${JSON.stringify(bad)} is refused`);
      assert.match(
        JSON.stringify(result.error!.issues),
        /allowed_endpoints/,
        `the error names the field for ${JSON.stringify(bad)}`,
      );
    }
  });
});

describe('by default, destinations reach public addresses only (no allow-list)', () => {
  let sluice: SluiceProcess;
  let admin: OutpostApi;
  let tenant: OutpostApi;
  let existing: { id: string };

  before(async () => {
    ({ sluice, admin } = await startSluice(undefined));
    tenant = await tenantClient(admin, 'acme');
    // accepted, never published to (its topic), deleted at the end
    existing = await tenant.createDestination('acme', destination('https://s3.eu-west-1.amazonaws.com'));
  });

  after(async () => {
    if (existing) await admin.call('DELETE', `/tenants/acme/destinations/${existing.id}`);
  });

  test('every refused address form is 422 naming config.endpoint at create, for a tenant token and the admin key', async () => {
    for (const endpoint of REFUSED_ADDRESSES) {
      for (const [who, api] of [
        ['tenant', tenant],
        ['admin', admin],
      ] as const) {
        const message = assert422(
          await api.call('POST', '/tenants/acme/destinations', destination(endpoint)),
          'config.endpoint',
          `${who} creates ${endpoint}`,
        );
        assert.match(message, /^config\.endpoint (is not allowed|failed)/, message);
      }
    }
    const list = await admin.expect<any[]>(200, 'GET', '/tenants/acme/destinations');
    assert.deepEqual(
      list.map((d) => d.id),
      [existing.id],
      'nothing refused was stored',
    );
  });

  test('every refused address form is 422 at PATCH, which changes nothing', async () => {
    for (const endpoint of REFUSED_ADDRESSES) {
      for (const [who, api] of [
        ['tenant', tenant],
        ['admin', admin],
      ] as const) {
        const body = { config: { endpoint }, credentials: { key: 'AKIANEWKEY0000000000', secret: 'new-secret' } };
        assert422(
          await api.call('PATCH', `/tenants/acme/destinations/${existing.id}`, body),
          'config.endpoint',
          `${who} patches ${endpoint}`,
        );
        assert422(
          await api.call('PATCH', `/acme/destinations/${existing.id}`, body),
          'config.endpoint',
          `${who} patches ${endpoint} (older path)`,
        );
      }
    }
    const got = await admin.expect(200, 'GET', `/tenants/acme/destinations/${existing.id}`);
    assert.equal(got.config.endpoint, 'https://s3.eu-west-1.amazonaws.com', 'the endpoint is unchanged');
  });

  test('schemes other than http and https are refused, naming config.endpoint', async () => {
    for (const endpoint of REFUSED_SCHEMES) {
      for (const [who, api] of [
        ['tenant', tenant],
        ['admin', admin],
      ] as const) {
        assert422(
          await api.call('POST', '/tenants/acme/destinations', destination(endpoint)),
          'config.endpoint',
          `${who} creates ${endpoint}`,
        );
        assert422(
          await api.call('PATCH', `/tenants/acme/destinations/${existing.id}`, {
            config: { endpoint },
            credentials: { key: 'k', secret: 's' },
          }),
          'config.endpoint',
          `${who} patches ${endpoint}`,
        );
      }
    }
    const scheme = await tenant.call(
      'POST',
      '/tenants/acme/destinations',
      destination('gopher://127.0.0.1:6379/_INFO'),
    );
    assert.ok(
      (scheme.body.data as string[]).some((m) => m.startsWith('config.endpoint failed') && /http/.test(m)),
      `the message says what is allowed: ${scheme.text}`,
    );
  });

  test('bucket names must be S3 bucket names', async () => {
    for (const bucket of BAD_BUCKETS) {
      assert422(
        await tenant.call('POST', '/tenants/acme/destinations', destination(undefined, { bucket })),
        'config.bucket',
        `bucket ${JSON.stringify(bucket)}`,
      );
      assert422(
        await tenant.call('PATCH', `/tenants/acme/destinations/${existing.id}`, {
          config: { bucket },
          credentials: { key: 'k', secret: 's' },
        }),
        'config.bucket',
        `PATCH bucket ${JSON.stringify(bucket)}`,
      );
    }
    for (const bucket of ['abc', 'my-events-bucket', 'logs.2026.example', 'a'.repeat(63)]) {
      const d = await tenant.createDestination('acme', destination(undefined, { bucket }));
      await admin.expect(200, 'DELETE', `/tenants/acme/destinations/${d.id}`);
    }
  });

  test('public endpoints, by name or address, are accepted (on a topic nothing publishes to, then deleted)', async () => {
    for (const endpoint of [
      'https://s3.example.com',
      'http://minio.example.com:9000/',
      'https://93.184.216.34',
      'https://[2606:4700:4700::1111]:9000',
    ]) {
      const d = await tenant.createDestination('acme', destination(endpoint));
      await admin.expect(200, 'DELETE', `/tenants/acme/destinations/${d.id}`);
    }
    assert.ok(!sluice.output.includes('PutObject'), 'nothing was sent anywhere');
  });
});

describe('allowed_endpoints opens exactly what it lists', () => {
  let sluice: SluiceProcess;
  let admin: OutpostApi;
  let tenant: OutpostApi;
  let s3: TestS3;

  before(async () => {
    s3 = new TestS3(['via-name', 'operator-bucket', 'other-bucket', 'tmpl']);
    await s3.start();
    cleanups.push(async () => {
      await s3.stop();
      rmSync(s3.directory, { recursive: true, force: true });
    });
    ({ sluice, admin } = await startSluice(['127.0.0.1/32', 'localhost']));
    tenant = await tenantClient(admin, 'acme');
  });

  test('127.0.0.1 is allowed; 127.0.0.2, ::1 and the rest are still refused', async () => {
    const ok = await tenant.createDestination('acme', destination(`http://127.0.0.1:${s3.port}`));
    const patched = await tenant.call('PATCH', `/tenants/acme/destinations/${ok.id}`, {
      config: { endpoint: `http://127.0.0.1:${s3.port + 1}/` },
      credentials: { key: S3_KEY, secret: S3_SECRET },
    });
    assert.equal(patched.status, 200, patched.text);
    for (const endpoint of [
      'http://127.0.0.2:9000',
      'http://[::1]:9000',
      'http://[::ffff:127.0.0.1]:9000',
      'http://2130706433:9000',
      'http://10.0.0.1',
      'http://169.254.169.254',
      'http://minio:9000',
    ]) {
      assert422(
        await tenant.call('POST', '/tenants/acme/destinations', destination(endpoint)),
        'config.endpoint',
        endpoint,
      );
      assert422(
        await tenant.call('PATCH', `/tenants/acme/destinations/${ok.id}`, {
          config: { endpoint },
          credentials: { key: S3_KEY, secret: S3_SECRET },
        }),
        'config.endpoint',
        `PATCH ${endpoint}`,
      );
    }
    await admin.expect(200, 'DELETE', `/tenants/acme/destinations/${ok.id}`);
  });

  test('end to end through an allowed name: http://localhost:<s3rver> delivers (localhost resolves to the allowed 127.0.0.1)', async () => {
    const d = await tenant.createDestination(
      'acme',
      destination(`http://localhost:${s3.port}`, {
        bucket: 'via-name',
        topics: ['by-name'],
        config: { key_template: `join('', ['by-name-', metadata."event-id"])` },
      }),
    );
    const { id } = await admin.publish({ tenant_id: 'acme', topic: 'by-name', data: { n: 1 } });
    const event = await settled(sluice, admin, id, d.id);
    assert.equal(deliveryStatus(event, d.id), 'success', JSON.stringify(event));
    assert.deepEqual(await s3.keys('via-name'), [`by-name-${id}`]);
  });

  test('key templates giving "..", ".", empty segments or a leading "/" fail once, are not retried, and send nothing', async () => {
    const proxy = await new FaultProxy(s3.port).start();
    cleanups.push(() => proxy.stop());
    const templates = {
      dotdot: `join('/', ['..', '..', 'admin', 'reset?all=true'])`,
      dot: `join('/', ['a', '.', metadata."event-id"])`,
      leading: `join('', ['/', metadata."event-id"])`,
      empty: `join('/', ['a', '', metadata."event-id"])`,
      trailing: `join('', [metadata."event-id", '/'])`,
    };
    const ids: Record<string, string> = {};
    for (const [name, key_template] of Object.entries(templates)) {
      ids[name] = (
        await tenant.createDestination(
          'acme',
          destination(proxy.endpoint, { bucket: 'tmpl', topics: [`tmpl-${name}`], config: { key_template } }),
        )
      ).id;
    }
    for (const [name, destinationId] of Object.entries(ids)) {
      const { id } = await admin.publish({ tenant_id: 'acme', topic: `tmpl-${name}`, data: { n: 1 } });
      const event = await settled(sluice, admin, id, destinationId);
      const delivery = event.deliveries.find((x: any) => x.destination_id === destinationId);
      assert.equal(delivery.status, 'failed', `${name}: ${JSON.stringify(event)}`);
      assert.equal(delivery.attempts, 1, `${name}: one attempt, no retry (retries remain for other failures)`);
      const attempts = await admin.attempts({ event_id: id });
      assert.equal(attempts.length, 1, `${name}: ${JSON.stringify(attempts)}`);
      assert.equal(attempts[0].code, 'key_template');
      assert.match(attempts[0].error, /must not start with "\/" nor hold empty, "\." or "\.\." segments/);
    }
    // the default key is checked too: an event id with dot segments cannot steer it
    const plain = await tenant.createDestination(
      'acme',
      destination(proxy.endpoint, { bucket: 'tmpl', topics: ['tmpl-default'] }),
    );
    const dotted = await admin.publish({
      id: 'x/../../../admin',
      tenant_id: 'acme',
      topic: 'tmpl-default',
      data: { n: 1 },
    });
    assert.equal(deliveryStatus(await settled(sluice, admin, dotted.id, plain.id), plain.id), 'failed');
    assert.equal(proxy.counts.requests, 0, 'no request reached the store');

    // the control: the same path does carry a good key
    const good = await tenant.createDestination(
      'acme',
      destination(proxy.endpoint, {
        bucket: 'tmpl',
        topics: ['tmpl-good'],
        config: { key_template: `join('/', ['ok', metadata."event-id"])` },
      }),
    );
    const { id } = await admin.publish({ tenant_id: 'acme', topic: 'tmpl-good', data: { n: 1 } });
    assert.equal(deliveryStatus(await settled(sluice, admin, id, good.id), good.id), 'success');
    assert.ok(proxy.counts.requests >= 1, 'the proxy is on the path');
    assert.deepEqual(await s3.keys('tmpl'), [`ok/${id}`]);
  });

  test("moving an operator's destination drops its credentials: the operator's keys never reach the tenant's listener", async () => {
    const listener = await new LocalServer(() => ({ status: 200, type: 'text/plain', body: '' })).start();
    const own = `http://127.0.0.1:${listener.port}`;
    const d = await admin.createDestination(
      'acme',
      destination(s3.endpoint, { bucket: 'operator-bucket', topics: ['moved'] }),
    );
    const before = await admin.publish({ tenant_id: 'acme', topic: 'moved', data: { n: 1 } });
    assert.equal(
      deliveryStatus(await settled(sluice, admin, before.id, d.id), d.id),
      'success',
      "the operator's keys work where they were given",
    );

    const attemptsToMove = [
      { config: { endpoint: own }, credentials: d.credentials }, // the masked values sent back
      { config: { endpoint: own } }, // no credentials at all
      { config: { endpoint: own }, credentials: { session: 'tok' } },
      { config: { bucket: 'other-bucket' }, credentials: d.credentials },
      { config: { region: 'eu-west-1' } },
    ];
    for (const [who, api] of [
      ['tenant', tenant],
      ['admin', admin],
    ] as const) {
      for (const body of attemptsToMove) {
        const res = await api.call('PATCH', `/tenants/acme/destinations/${d.id}`, body);
        const what = `${who} PATCH ${JSON.stringify(body)}`;
        assert422(res, 'credentials.key', what);
        assert.ok(res.body.data.includes('credentials.key is required'), `${what}: ${res.text}`);
        assert.ok(res.body.data.includes('credentials.secret is required'), `${what}: ${res.text}`);
        assert.ok(
          (res.body.data as string[]).some((m) =>
            /stored credentials are not kept when config\.(endpoint|bucket|region) changes/.test(m),
          ),
          `${what} says why: ${res.text}`,
        );
      }
    }
    const unchanged = await admin.expect(200, 'GET', `/tenants/acme/destinations/${d.id}`);
    assert.equal(unchanged.config.endpoint, s3.endpoint);
    assert.equal(unchanged.config.bucket, 'operator-bucket');

    // with its own credentials the tenant may move it; what arrives is signed with the tenant's key
    const tenantKey = 'AKIATENANTOWNKEY0000';
    const moved = await tenant.call('PATCH', `/tenants/acme/destinations/${d.id}`, {
      config: { endpoint: own },
      credentials: { key: tenantKey, secret: 'tenant-secret' },
    });
    assert.equal(moved.status, 200, moved.text);
    const after = await admin.publish({ tenant_id: 'acme', topic: 'moved', data: { n: 2 } });
    assert.equal(deliveryStatus(await settled(sluice, admin, after.id, d.id), d.id), 'success');
    assert.ok(listener.received.length >= 1, 'the listener got the delivery');
    for (const r of listener.received) {
      const headers = JSON.stringify(r.headers);
      assert.ok(headers.includes(tenantKey), `signed with the tenant's key: ${headers}`);
      assert.ok(!headers.includes(S3_KEY), `the operator's key id never reaches the listener: ${headers}`);
    }
  });

  test('attempts never carry the remote answer: only its status and code', async () => {
    const MARKER = 'SSRF-MARKER-7f3a9c';
    const remote = await new LocalServer((req) => {
      if (req.url?.startsWith('/marker-xml/')) {
        return {
          status: 500,
          type: 'application/xml',
          body: `<?xml version="1.0"?><Error><Code>InternalError</Code><Message>${MARKER} internal admin page</Message><RequestId>${MARKER}</RequestId></Error>`,
        };
      }
      if (req.url?.startsWith('/marker-code/')) {
        return {
          status: 403,
          type: 'application/xml',
          body: `<Error><Code>${MARKER}</Code><Message>${MARKER}</Message></Error>`,
        };
      }
      return { status: 500, type: 'text/html', body: `<html><body>${MARKER}: redis_version:7.2.4</body></html>` };
    }).start();
    const expected = {
      'marker-xml': 'InternalError',
      'marker-html': undefined,
      'marker-code': 'UnknownError',
    } as const;
    for (const [bucket, code] of Object.entries(expected)) {
      const d = await tenant.createDestination(
        'acme',
        destination(`http://127.0.0.1:${remote.port}`, { bucket, topics: [bucket] }),
      );
      const { id } = await admin.publish({ tenant_id: 'acme', topic: bucket, data: { n: 1 } });
      assert.equal(deliveryStatus(await settled(sluice, admin, id, d.id), d.id), 'failed');
      const attempts = await admin.attempts({ event_id: id });
      assert.ok(attempts.length >= 1);
      for (const a of attempts) {
        assert.equal(a.status, 'failed');
        if (code) assert.equal(a.code, code, JSON.stringify(a));
        assert.match(a.error, /\(HTTP (500|403)\)/, `the status is told: ${a.error}`);
        assert.ok(a.error.length <= 2048, 'the error is bounded');
      }
      const views = [
        await tenant.call('GET', `/attempts?event_id=${id}`),
        await tenant.call('GET', `/attempts/${attempts[0].id}`),
        await tenant.call('GET', `/tenants/acme/destinations/${d.id}/attempts`),
        await tenant.call('GET', `/events/${id}`),
        await tenant.call('GET', `/events?destination_id=${d.id}`),
        await admin.call('GET', '/attempts'),
        await admin.call('GET', '/events'),
      ];
      for (const v of views) {
        assert.equal(v.status, 200, v.text);
        assert.ok(!v.text.includes(MARKER), `the remote's words are not in the log: ${v.text.slice(0, 2000)}`);
      }
    }
    assert.ok(remote.received.length >= 3, 'the remote answered every destination');
    assert.ok(!sluice.output.includes(MARKER), "nor in Sluice's own log lines");
  });
});

describe('an allowed name that resolves to an address nobody allowed is refused at connect', () => {
  let sluice: SluiceProcess;
  let admin: OutpostApi;
  let tenant: OutpostApi;

  before(async () => {
    // localhost is listed as a name, 127.0.0.1 is not: the name may be written, its address may not be reached
    ({ sluice, admin } = await startSluice(['localhost']));
    tenant = await tenantClient(admin, 'acme');
  });

  test('saved, then every attempt (retries, POST /retry, a body big enough for Expect: 100-continue) is refused before connecting', async () => {
    const local = await new LocalServer(() => ({ status: 200, type: 'text/plain', body: '' })).start();
    const d = await tenant.createDestination(
      'acme',
      destination(`http://localhost:${local.port}`, { topics: ['rebound'] }),
    );
    const small = await admin.publish({ tenant_id: 'acme', topic: 'rebound', data: { n: 1 } });
    const big = await admin.publish({ tenant_id: 'acme', topic: 'rebound', data: { blob: 'x'.repeat(2_200_000) } });
    for (const id of [small.id, big.id]) {
      const event = await settled(sluice, admin, id, d.id);
      assert.equal(deliveryStatus(event, d.id), 'failed', JSON.stringify(event.deliveries));
      const attempts = await admin.attempts({ event_id: id });
      assert.equal(attempts.length, 2, 'the first attempt and its one retry');
      for (const a of attempts) {
        assert.equal(a.code, ENDPOINT_NOT_ALLOWED, JSON.stringify(a));
        assert.match(a.error, /localhost resolves only to addresses destinations may not reach/);
        assert.ok(!a.error.includes('127.0.0.1'), `the resolved address is not told: ${a.error}`);
      }
    }
    const retry = await tenant.call('POST', '/retry', { event_id: small.id, destination_id: d.id });
    assert.equal(retry.status, 202, retry.text);
    await sluice.until(
      'the manual attempt',
      async () => (await admin.attempts({ event_id: small.id })).length === 3,
      WAIT_MS,
    );
    const manual = (await admin.attempts({ event_id: small.id })).find((a) => a.manual);
    assert.equal(manual?.code, ENDPOINT_NOT_ALLOWED, JSON.stringify(manual));
    assert.equal(local.connections, 0, 'nothing ever connected to the local server');
  });
});
