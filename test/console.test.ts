/**
 * The operator console at /ui, clicked through in a real browser (chromium or Chrome driven by playwright-core:
 * see helpers/browser.ts for where it is looked for; without one the suite is skipped, saying so) against a
 * running Sluice with an output that delivers, one that cannot (so the buffer holds a backlog), a tenant, a
 * working and a failing destination. Screenshots go to test/artifacts/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser, noBrowser } from './helpers/browser.js';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';
import { OutpostApi } from './helpers/outpost.js';

const ADMIN_KEY = 'console-admin-key';
const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const WAIT_MS = 15_000;
const BACKLOG = 5_000;

describe('operator console', { skip: noBrowser }, () => {
  let dir: string;
  let s3: TestS3;
  let sluice: SluiceProcess;
  let browser: Browser;
  let page: Page;
  let sent: Array<Record<string, unknown>>;
  let failedEventId: string;

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    dir = tempDir('sluice-console-');
    s3 = new TestS3(['events']);
    await s3.start();
    sluice = await new SluiceProcess({
      config: {
        data_dir: path.join(dir, 'data'),
        api: { admin_key: ADMIN_KEY, retry: { max_retries: 0 }, destinations: { allowed_endpoints: ['127.0.0.1/32'] } },
        outputs: [
          { name: 'archive', type: 'file', path: path.join(dir, 'archive'), batch: { max_age: '200ms' } },
          // never delivers: what it has not written stays in the buffer, a backlog of some 100 KiB for the chart
          {
            name: 'stuck',
            type: 's3',
            bucket: 'no-such-bucket',
            endpoint: s3.endpoint,
            force_path_style: true,
            access_key_id: S3_KEY,
            secret_access_key: S3_SECRET,
            batch: { max_age: '200ms' },
            retry: { initial_backoff: '500ms', max_backoff: '2s' },
          },
        ],
      },
    }).start();
    const api = new OutpostApi(sluice.url, ADMIN_KEY);
    await api.putTenant('acme');
    const connection = { region: 'us-east-1', endpoint: s3.endpoint };
    await api.createDestination('acme', {
      id: 'des_ok',
      type: 'aws_s3',
      topics: ['orders'],
      config: { bucket: 'events', ...connection },
      credentials: { key: S3_KEY, secret: S3_SECRET },
    });
    await api.createDestination('acme', {
      id: 'des_broken',
      type: 'aws_s3',
      topics: ['orders'],
      config: { bucket: 'no-such-bucket', ...connection },
      credentials: { key: S3_KEY, secret: S3_SECRET },
    });
    failedEventId = (await api.publish({ tenant_id: 'acme', topic: 'orders', data: { order_id: 'o-1' } })).id;
    sent = decisions(20);
    assert.equal((await postDecisions(sluice.url, sent)).status, 200);
    // the backlog: dated five hours ago, so that the lookups of the last 2 h below find only `sent`
    const earlier = new Date(Date.now() - 5 * 3600_000).toISOString();
    assert.equal((await postDecisions(sluice.url, decisions(BACKLOG, { timestamp: earlier }))).status, 200);
    await sluice.until('the output delivered and the broken destination failed', async () => {
      const attempts = await api.attempts({ destination_id: 'des_broken', status: 'failed' });
      return (await sluice.ready()).outputs[0]!.delivered.events === 20 + BACKLOG && attempts.length > 0;
    });
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  });

  after(async () => {
    await browser?.close();
    await sluice?.kill9();
    await s3?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('asks for the admin key, refuses a wrong one, opens with the right one', async () => {
    await page.goto(`${sluice.url}/ui`);
    await page.waitForSelector('#login:not([hidden])', { timeout: WAIT_MS });
    await page.fill('#key', 'wrong-key');
    await page.click('#login button');
    await page.waitForFunction(() => document.getElementById('login-error')?.textContent !== '', undefined, {
      timeout: WAIT_MS,
    });
    assert.equal(await page.isVisible('#console'), false, 'nothing is shown without the admin key');
    await page.fill('#key', ADMIN_KEY);
    await page.click('#login button');
    await page.waitForSelector('#console:not([hidden])', { timeout: WAIT_MS });
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-overview.png'), fullPage: true });
  });

  test('shows the state, the charts, each output and destination with its last error, and the tenants', async () => {
    await page.waitForFunction(() => document.querySelectorAll('#outputs tbody tr').length > 0, undefined, {
      timeout: WAIT_MS,
    });
    assert.match((await page.textContent('#status')) ?? '', /ok|degraded/);
    assert.equal(await page.locator('#chart-rates canvas').count(), 1, 'the rates chart is drawn');
    assert.equal(await page.locator('#chart-backlog canvas').count(), 1, 'the backlog chart is drawn');
    // cells by column (output, type, target, state, delivered ...), not a row's text: "ok" is also in "des_ok"
    const cells = (table: string, hasText: string) =>
      page.locator(`#${table} tbody tr`, { hasText }).first().locator('td').allTextContents();
    const archive = await cells('outputs', 'archive');
    assert.deepEqual(
      [archive[0], archive[1], archive[3], archive[4]],
      ['archive', 'file', 'ok', String(20 + BACKLOG)],
      `the output delivered every decision: ${archive.join(' | ')}`,
    );
    const stuck = await cells('outputs', 'stuck');
    assert.match(stuck[3] ?? '', /^(retrying|failing)$/, `stuck: ${stuck.join(' | ')}`);
    assert.equal(await page.locator('#destinations tbody tr').count(), 2);
    // destination columns: tenant, destination, type, target, topics, state, last error
    const broken = await cells('destinations', 'des_broken');
    assert.equal(broken[5], 'failing', broken.join(' | '));
    assert.match(broken[6] ?? '', /NoSuchBucket/, broken.join(' | '));
    const working = await cells('destinations', 'des_ok');
    assert.equal(working[1], 'des_ok');
    assert.equal(working[5], 'ok', working.join(' | '));
    assert.equal(working[6], '', 'no last error');
    assert.equal((await cells('tenants', 'acme'))[0], 'acme');
  });

  test('charts: y-axis labels fit their axis, legends show the latest values without hovering, times in UTC', async () => {
    const charts = await page.evaluate(() =>
      ['chart-rates', 'chart-backlog'].map((id) => {
        // the uPlot instance the console keeps on its element (see ui/console.js)
        const u = (document.getElementById(id) as unknown as { uplot: any }).uplot;
        const axes = u.axes.slice(1).map((a: any) => {
          u.ctx.font = a.font[0];
          const widest = Math.max(
            0,
            ...(a._values as string[]).map((v) => u.ctx.measureText(v).width / devicePixelRatio),
          );
          return { values: a._values as string[], size: a._size as number, needed: widest + a.ticks.size + a.gap };
        });
        const legend = [...document.querySelectorAll(`#${id} .u-legend .u-value`)].map((e) => e.textContent ?? '');
        return { id, axes, legend };
      }),
    );
    for (const c of charts) {
      for (const a of c.axes)
        assert.ok(
          a.needed <= a.size,
          `${c.id}: labels ${JSON.stringify(a.values)} need ${a.needed.toFixed(1)} px, the axis is ${a.size} px`,
        );
      assert.ok(c.legend.length >= 3, `${c.id}: a legend with time and two series: ${JSON.stringify(c.legend)}`);
      for (const v of c.legend)
        assert.ok(
          v !== '' && !v.includes('--'),
          `${c.id}: legend values before any hover: ${JSON.stringify(c.legend)}`,
        );
      assert.match(c.legend[0]!, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$/, `${c.id}: the legend's time`);
    }
    const backlog = charts.find((c) => c.id === 'chart-backlog')!;
    // the buffer holds what `stuck` has not written (some 100 KiB): bytes in binary units, on the left axis
    assert.match(backlog.legend[1]!, /^\d+(\.\d)? (KiB|MiB)$/, `buffer bytes in the legend: ${backlog.legend[1]}`);
    assert.ok(
      backlog.axes[0]!.values.some((v) => /(KiB|MiB)$/.test(v)),
      `bytes axis labels: ${JSON.stringify(backlog.axes[0]!.values)}`,
    );
    // every time on the page, in one format and zone
    const times = [
      await page.textContent('#updated'),
      ...(await page.locator('#tenants tbody tr td:nth-child(3)').allTextContents()),
      ...(await page.locator('#failures tbody tr td:nth-child(1)').allTextContents()),
    ];
    assert.ok(times.length >= 3, JSON.stringify(times));
    for (const t of times)
      assert.match(t ?? '', /\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$/, `a time on the page: ${t}`);
  });

  test('a failed attempt has a retry button that queues a new attempt', async () => {
    const row = page.locator('#failures tbody tr', { hasText: failedEventId });
    await row.first().waitFor({ timeout: WAIT_MS });
    await row.first().locator('button').click();
    await page.waitForFunction(
      () => /queued|failed/.test(document.getElementById('retry-result')?.textContent ?? ''),
      undefined,
      { timeout: WAIT_MS },
    );
    assert.match(
      (await page.textContent('#retry-result')) ?? '',
      new RegExp(`Retry of ${failedEventId} on des_broken queued`),
    );
    const api = new OutpostApi(sluice.url, ADMIN_KEY);
    await sluice.until('a manual attempt', async () =>
      (await api.attempts({ event_id: failedEventId, destination_id: 'des_broken' })).some((a) => a.manual === true),
    );
  });

  test('finds a decision by id over the output, and shows it whole', async () => {
    const wanted = sent[5]!;
    await page.selectOption('#lookup-output', 'archive');
    await page.fill('#lookup-id', wanted.decision_id as string);
    await page.fill('#lookup-from', '2h');
    await page.click('#lookup button');
    await page.waitForFunction(
      () => /decision/.test(document.getElementById('lookup-summary')?.textContent ?? ''),
      undefined,
      { timeout: WAIT_MS },
    );
    assert.match((await page.textContent('#lookup-summary')) ?? '', /^1 decision in \d+ objects/);
    await page.click('#lookup-results tbody tr td');
    const detail = JSON.parse((await page.textContent('#lookup-detail')) ?? '{}') as Record<string, unknown>;
    assert.deepEqual(detail, wanted, 'the decision as it was sent');
    // and a time range finds all of them
    await page.fill('#lookup-id', '');
    await page.click('#lookup button');
    await page.waitForFunction(
      () => /^20 decisions/.test(document.getElementById('lookup-summary')?.textContent ?? ''),
      undefined,
      { timeout: WAIT_MS },
    );
    assert.equal(await page.locator('#lookup-results tbody tr').count(), 20);
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-lookup.png'), fullPage: true });
  });

  test('the page loads nothing from outside Sluice', async () => {
    const outside: string[] = [];
    const loaded: string[] = [];
    const fresh = await browser.newPage();
    fresh.on('request', (r) => {
      if (!r.url().startsWith(sluice.url)) outside.push(r.url());
    });
    fresh.on('requestfinished', (r) => loaded.push(new URL(r.url()).pathname));
    const res = await fresh.goto(`${sluice.url}/ui`);
    // the page really loaded and ran (a failed load would make no outside requests either)
    assert.equal(res?.status(), 200);
    await fresh.waitForSelector('#login:not([hidden])', { timeout: WAIT_MS });
    await fresh.waitForLoadState('networkidle');
    await fresh.close();
    for (const asset of ['/ui/assets/console.js', '/ui/assets/uplot.js', '/ui/assets/console.css'])
      assert.ok(loaded.includes(asset), `${asset} loaded: ${loaded.join(', ')}`);
    assert.deepEqual(outside, [], 'no CDN or other outside requests');
  });
});
