/**
 * The dashboard's alerts in a real browser (Debian's Chromium, playwright-core) against an
 * in-process cloud: the Alerts page lists open alerts (the header counts them), an operator
 * acknowledges one and silences another from the page (both reach the API and its audit), and the
 * twin page shows the device's alerts. A viewer's click is refused with a clear message. No console
 * errors; a screenshot is kept in test-artifacts/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import t from 'tap';
import { call, envelope, readings, startTestCloud, telemetry } from '../helpers/cloud.js';
import { tempDir, waitFor } from '../helpers/util.js';

const CHROMIUM = '/usr/bin/chromium';
const artifacts = new URL('../../test-artifacts/', import.meta.url).pathname;

t.test('dashboard alerts: list, acknowledge, silence, twin page', async (t) => {
  t.ok(existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM}`);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startTestCloud(join(dir, 'cloud'), {
    alerts: { evaluateIntervalMs: 3_600_000, rules: [{ id: 'anomaly', kind: 'device_anomaly', severity: 'critical' }] },
  });
  t.teardown(() => cloud.stop());
  const operator = (await cloud.tokens.create({ role: 'operator', createdBy: 'test' })).token;
  const viewer = (await cloud.tokens.create({ role: 'viewer', createdBy: 'test' })).token;
  const admin = (await cloud.tokens.create({ role: 'admin', createdBy: 'test' })).token;
  for (const device of ['fan-1', 'fan-2']) {
    const rs = readings(3).map((r, i) => (i === 2 ? { ...r, alert: true, score: 0.98 } : r));
    t.equal(
      (await call('POST', `${cloud.url}/v1/ingest`, { token: admin, body: envelope(`b-${device}`, 'site-a', [telemetry(device, 1, rs)]) }))
        .status,
      200,
    );
  }
  await cloud.alerting.engine.evaluate();

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 403/.test(m.text())) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await page.goto(`${cloud.url}/dashboard/#token=${viewer}`);
  await page.goto(`${cloud.url}/dashboard/#/alerts`);
  await waitFor(async () => (await page.locator('#alerts-table tbody tr').count()) === 2, 20_000, 'two open alerts').catch(async (err) => {
    throw new Error(`${String(err)}: ${await page.textContent('main')} ${consoleErrors.join(' | ')}`);
  });
  await waitFor(async () => (await page.textContent('#alert-count')) === '2', 20_000, 'the header counts two');
  await page.click('tr[data-alert-id] [data-ack]');
  await waitFor(async () => /operator token/.test((await page.textContent('#alerts-status')) ?? ''), 10_000, 'a viewer is told why');

  await page.evaluate(
    (tok) =>
      (globalThis as unknown as { localStorage: { setItem(k: string, v: string): void } }).localStorage.setItem('edgetwin.token', tok),
    operator,
  );
  await page.reload();
  await waitFor(async () => (await page.locator('#alerts-table tbody tr').count()) === 2, 20_000, 'rows again');
  const rows = page.locator('#alerts-table tbody tr');
  const first = await rows.nth(0).getAttribute('data-alert-id');
  await rows.nth(0).locator('[data-ack]').click();
  await waitFor(
    async () =>
      /acked by/.test((await rows.nth(0).textContent()) ?? '') || /acked by/.test((await page.textContent('#alerts-table')) ?? ''),
    10_000,
    'acknowledged',
  );
  const second = await page.locator(`#alerts-table tbody tr:not([data-alert-id="${first}"])`).getAttribute('data-alert-id');
  await page.locator(`tr[data-alert-id="${second}"] [data-silence]`).click();
  await waitFor(async () => /silenced/.test((await page.textContent(`tr[data-alert-id="${second}"]`)) ?? ''), 10_000, 'silenced');
  t.match(await page.textContent('#silences'), /silenced from the dashboard/);
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'dashboard-alerts.png'), fullPage: true });

  const acked = (await call('GET', `${cloud.url}/v1/alerts/${first}`, { token: viewer })).body;
  t.ok(acked.acknowledgedBy?.length > 0, 'the acknowledgement reached the API');
  const audit = (await cloud.audit.list({ limit: 20 })).items.map((e) => e.action);
  t.ok(audit.includes('alert.ack') && audit.includes('alert.silence'), 'and the audit trail');

  const device = acked.device as string;
  await page.goto(`${cloud.url}/dashboard/#/twins/${device}`);
  await waitFor(
    async () => (await page.locator('#device-alerts tbody tr').count()) === 1,
    20_000,
    "the twin page lists the device's alert",
  );
  t.match(await page.textContent('#device-alerts'), /Device anomaly/);
  t.same(consoleErrors, [], 'no console errors');
});
