/**
 * The operator console at /ui, clicked through in a real browser (Debian's chromium driven by playwright-core)
 * against a running Sluice with an output, a tenant, a working and a failing destination. Screenshots go to
 * test/artifacts/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser } from './helpers/browser.js';
import { S3_KEY, S3_SECRET, TestS3 } from './helpers/s3.js';
import { SluiceProcess, tempDir } from './helpers/sluice.js';
import { decisions, postDecisions } from './helpers/opa.js';
import { OutpostApi } from './helpers/outpost.js';

const ADMIN_KEY = 'console-admin-key';
const ARTIFACTS = path.resolve(import.meta.dirname, 'artifacts');
const WAIT_MS = 15_000;

describe('operator console', () => {
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
        outputs: [{ name: 'archive', type: 'file', path: path.join(dir, 'archive'), batch: { max_age: '200ms' } }],
      },
    }).start();
    const api = new OutpostApi(sluice.url, ADMIN_KEY);
    await api.putTenant('acme');
    const connection = { region: 'us-east-1', endpoint: s3.endpoint };
    await api.createDestination('acme', { id: 'des_ok', type: 'aws_s3', topics: ['orders'], config: { bucket: 'events', ...connection }, credentials: { key: S3_KEY, secret: S3_SECRET } });
    await api.createDestination('acme', { id: 'des_broken', type: 'aws_s3', topics: ['orders'], config: { bucket: 'no-such-bucket', ...connection }, credentials: { key: S3_KEY, secret: S3_SECRET } });
    failedEventId = (await api.publish({ tenant_id: 'acme', topic: 'orders', data: { order_id: 'o-1' } })).id;
    sent = decisions(20);
    assert.equal((await postDecisions(sluice.url, sent)).status, 200);
    await sluice.until('the output delivered and the broken destination failed', async () => {
      const attempts = await api.attempts({ destination_id: 'des_broken', status: 'failed' });
      return (await sluice.ready()).outputs[0]!.delivered.events === 20 && attempts.length > 0;
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
    await page.waitForFunction(() => document.getElementById('login-error')?.textContent !== '', undefined, { timeout: WAIT_MS });
    assert.equal(await page.isVisible('#console'), false, 'nothing is shown without the admin key');
    await page.fill('#key', ADMIN_KEY);
    await page.click('#login button');
    await page.waitForSelector('#console:not([hidden])', { timeout: WAIT_MS });
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-overview.png'), fullPage: true });
  });

  test('shows the state, the charts, each output and destination with its last error, and the tenants', async () => {
    await page.waitForFunction(() => document.querySelectorAll('#outputs tbody tr').length > 0, undefined, { timeout: WAIT_MS });
    assert.match(await page.textContent('#status') ?? '', /ok|degraded/);
    assert.equal(await page.locator('#chart-rates canvas').count(), 1, 'the rates chart is drawn');
    assert.equal(await page.locator('#chart-backlog canvas').count(), 1, 'the backlog chart is drawn');
    const output = await page.textContent('#outputs tbody tr');
    assert.match(output ?? '', /archive.*file.*ok.*20/s, 'the output delivered the 20 decisions');
    const destinations = await page.locator('#destinations tbody tr').allTextContents();
    assert.equal(destinations.length, 2);
    assert.match(destinations.find((r) => r.includes('des_broken')) ?? '', /failing.*NoSuchBucket/s);
    assert.match(destinations.find((r) => r.includes('des_ok')) ?? '', /ok/);
    assert.match(await page.textContent('#tenants') ?? '', /acme/);
  });

  test('a failed attempt has a retry button that queues a new attempt', async () => {
    const row = page.locator('#failures tbody tr', { hasText: failedEventId });
    await row.first().waitFor({ timeout: WAIT_MS });
    await row.first().locator('button').click();
    await page.waitForFunction(() => /queued|failed/.test(document.getElementById('retry-result')?.textContent ?? ''), undefined, { timeout: WAIT_MS });
    assert.match(await page.textContent('#retry-result') ?? '', new RegExp(`Retry of ${failedEventId} on des_broken queued`));
    const api = new OutpostApi(sluice.url, ADMIN_KEY);
    await sluice.until('a manual attempt', async () => (await api.attempts({ event_id: failedEventId, destination_id: 'des_broken' })).some((a) => a.manual === true));
  });

  test('finds a decision by id over the output, and shows it whole', async () => {
    const wanted = sent[5]!;
    await page.selectOption('#lookup-output', 'archive');
    await page.fill('#lookup-id', wanted.decision_id as string);
    await page.fill('#lookup-from', '2h');
    await page.click('#lookup button');
    await page.waitForFunction(() => /decision/.test(document.getElementById('lookup-summary')?.textContent ?? ''), undefined, { timeout: WAIT_MS });
    assert.match(await page.textContent('#lookup-summary') ?? '', /^1 decision in \d+ objects/);
    await page.click('#lookup-results tbody tr td');
    const detail = JSON.parse(await page.textContent('#lookup-detail') ?? '{}') as Record<string, unknown>;
    assert.deepEqual(detail, wanted, 'the decision as it was sent');
    // and a time range finds all of them
    await page.fill('#lookup-id', '');
    await page.click('#lookup button');
    await page.waitForFunction(() => /^20 decisions/.test(document.getElementById('lookup-summary')?.textContent ?? ''), undefined, { timeout: WAIT_MS });
    assert.equal(await page.locator('#lookup-results tbody tr').count(), 20);
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-lookup.png'), fullPage: true });
  });

  test('the page loads nothing from outside Sluice', async () => {
    const outside: string[] = [];
    const fresh = await browser.newPage();
    fresh.on('request', (r) => { if (!r.url().startsWith(sluice.url)) outside.push(r.url()); });
    await fresh.goto(`${sluice.url}/ui`);
    await fresh.waitForLoadState('networkidle');
    await fresh.close();
    assert.deepEqual(outside, [], 'no CDN or other outside requests');
  });
});
