/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) against a running
 * demo: twins appear, the site shows its collector's spool depth (site heartbeat), search narrows
 * the list, a chart renders with data and alert markers, recent alerts are listed, a desired change
 * made in the page reaches the agent and comes back applied, a stale ETag is shown as a conflict,
 * a direct method called from the twin page shows the agent's answer, no console errors;
 * screenshots are kept in test-artifacts/.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import t from 'tap';
import { request } from 'undici';
import { freePort, spawnCli } from '../helpers/cli.js';
import { tempDir, waitFor } from '../helpers/util.js';

const CHROMIUM = '/usr/bin/chromium';
const artifacts = new URL('../../test-artifacts/', import.meta.url).pathname;

t.test('dashboard: live twins, a chart with data, a desired change round-trips', async (t) => {
  t.ok(existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM} (.ci/run installs Debian's chromium)`);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const [cloudPort, mqttPort] = [await freePort(), await freePort()];
  const demo = spawnCli(['demo', '--cloud-port', String(cloudPort), '--mqtt-port', String(mqttPort)], { EDGETWIN_HOME: dir });
  t.teardown(async () => {
    const exited = new Promise((r) => demo.once('exit', r));
    demo.kill('SIGINT');
    await exited;
  });
  const url = `http://127.0.0.1:${cloudPort}`;
  await waitFor(() => demo.output().includes('/dashboard/'), 120_000, `the demo (output: ${demo.output()})`);
  const { admin } = JSON.parse(readFileSync(join(dir, 'demo/tokens.json'), 'utf8')) as { admin: string };

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    // The conflict step provokes a 412 on purpose; Chromium logs every non-2xx fetch.
    if (m.type() === 'error' && !/status of 412/.test(m.text())) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  mkdirSync(artifacts, { recursive: true });

  await page.goto(`${url}/dashboard/#token=${admin}`);
  // The page's CSP forbids eval, so waits poll with locators rather than page.waitForFunction strings.
  const text = async (sel: string): Promise<string> => (await page.textContent(sel)) ?? '';
  await waitFor(async () => (await page.locator('#twins tbody tr').count()) === 3, 30_000, 'three rows');
  t.same(
    (await page.locator('#twins tbody tr th a').allTextContents()).sort(),
    ['sim-1', 'sim-2', 'sim-3'],
    'the three demo twins are listed',
  );
  t.notOk(page.url().includes('token='), 'the token is taken out of the address bar');
  await waitFor(async () => (await text('#live')) === 'live', 10_000, 'the live stream');

  // An alert reading of sim-1 a minute ago, as a collector would forward it (the admin may ingest):
  // posted now so that the lakehouse has landed it by the time the twin page reads history.
  const api = async (
    method: 'GET' | 'POST' | 'PATCH',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ): Promise<{ status: number; body: any }> => {
    const r = await request(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const txt = await r.body.text();
    return { status: r.statusCode, body: txt ? (JSON.parse(txt) as unknown) : null };
  };
  const alertTs = Date.now() - 60_000;
  // What the agent's scorer attaches to an alert (agent/scoring/explain.ts): its top feature groups.
  const explain = {
    detector: 'level',
    surprise: 9.5,
    baseline: 0.4,
    groups: [
      { group: 'value', contribution: 6.25 },
      { group: 'daily', contribution: 2.5 },
      { group: 'noise', contribution: -0.35 },
    ],
  };
  const ingest = await api('POST', '/v1/ingest', {
    v: 1,
    batchId: 'dashboard-alert-1',
    site: 'demo-site',
    messages: [
      {
        v: 1,
        device: 'sim-1',
        epoch: 999_999,
        readings: [
          { seq: 1, ts: alertTs, metric: 'temperature', value: 31.5, unit: 'degC', score: 0.99, alert: true, explain },
          // A clock a day ahead: quarantined (`timestamp`), counted on the twin, shown on its page.
          { seq: 2, ts: Date.now() + 86_400_000, metric: 'temperature', value: 20, unit: 'degC' },
        ],
      },
    ],
  });
  t.equal(ingest.status, 200, 'the alert reading is ingested');

  // The site card shows the collector's heartbeat: spool depth and a fresh report.
  const siteCard = page.locator('#sites li[data-site="demo-site"]');
  await waitFor(
    async () =>
      /^spool \d+ rows · /.test(
        (await siteCard
          .locator('[data-spool]')
          .textContent({ timeout: 1000 })
          .catch(() => '')) ?? '',
      ),
    30_000,
    'the spool depth on the site card',
  );
  t.equal(await siteCard.locator('[data-heartbeat]').getAttribute('data-heartbeat'), 'fresh', 'the heartbeat is fresh');
  t.match(await siteCard.textContent(), /\d+ connected · collector \d+\.\d+\.\d+/, 'connected devices and the collector version');
  await page.screenshot({ path: join(artifacts, 'dashboard-overview.png') });

  // Search narrows the list in place; no match shows the empty note; clearing brings all back.
  const rows = page.locator('#twins tbody tr');
  await page.fill('#filters input[name=q]', 'sim-2');
  await waitFor(async () => (await rows.count()) === 1, 10_000, 'one row for sim-2');
  t.same(await page.locator('#twins tbody tr th a').allTextContents(), ['sim-2'], 'search keeps only the matching twin');
  await page.fill('#filters input[name=q]', 'no-such-device');
  await waitFor(async () => (await rows.count()) === 0, 10_000, 'no rows');
  t.ok(await page.isVisible('#twins-empty'), '"No devices match." is shown');
  await page.fill('#filters input[name=q]', '');
  await page.selectOption('#filters select[name=site]', 'demo-site');
  await waitFor(async () => (await rows.count()) === 3, 10_000, 'three rows again');
  t.pass('clearing the search and choosing the site lists all three');

  await page.click('a[href="#/twins/sim-1"]');
  await page.waitForSelector('#chart canvas', { timeout: 30_000 });
  // The chart reads history from the lakehouse, which lands readings in micro-batches.
  await page.selectOption('#chart-form select[name=metric]', 'temperature');
  await waitFor(
    async () =>
      /^temperature over the last 1 h: [1-9]\d* points, \d+ alerts?$/.test((await page.getAttribute('#chart', 'aria-label')) ?? ''),
    40_000,
    'a temperature chart with data',
  );
  t.match(await text('#chart-note'), /^[1-9]\d* points from (silver|gold)/);
  // The alert reading lands in the lakehouse in a micro-batch; the page re-reads history every 10 s.
  await waitFor(async () => Number((await page.getAttribute('#chart', 'data-alerts')) ?? 0) >= 1, 60_000, 'an alert marker on the chart');
  t.match(await page.getAttribute('#chart', 'aria-label'), /[1-9]\d* alerts?$/, 'the chart says how many alert markers it draws');
  t.match(await text('#chart-note'), /alert markers? \(red\)/);
  await waitFor(async () => (await page.locator('#alerts li[data-alert]').count()) >= 1, 30_000, 'the recent alerts list');
  const alertItems = await page
    .locator('#alerts li[data-alert]')
    .evaluateAll((lis) => lis.map((li) => [li.getAttribute('data-alert'), li.getAttribute('title')]));
  t.ok(
    alertItems.some(([m, ts]) => m === 'temperature' && ts === new Date(alertTs).toISOString()),
    'the ingested alert is among the recent alerts',
  );
  // Its explanation: in the recent alerts, under the chart for its marker, in the marker's tooltip and on the twin.
  const why = /why: value \+6\.25, daily \+2\.5, noise −0\.35 \(level\)/;
  t.match(await text(`#alerts li[data-alert="temperature"][title="${new Date(alertTs).toISOString()}"]`), why, 'the recent alert says why');
  await waitFor(
    async () => (await page.locator('#chart-explain li[data-explain="temperature"]').count()) >= 1,
    30_000,
    'the marker explained',
  );
  t.match(await text('#chart-explain li[data-explain="temperature"]'), why, 'the chart lists the marker with its explanation');
  t.match(
    await text('[data-quarantine]'),
    /^1 row of this device's data in quarantine · last: timestamp, /,
    'the twin page shows its quarantine',
  );
  const twinDoc = (await api('GET', '/v1/twins/sim-1')).body;
  t.same(twinDoc.anomaly.lastAlert.explain, explain, "the twin keeps its newest alert's explanation");
  t.equal(twinDoc.anomaly.lastAlert.metric, 'temperature');
  const anomalies = (await api('GET', `/v1/anomalies?device=sim-1&from=${new Date(alertTs - 60_000).toISOString()}`)).body;
  t.same(
    anomalies.items.find((a: { seq: number; epoch: number }) => a.epoch === 999_999 && a.seq === 1)?.explain,
    explain,
    '/v1/anomalies carries it',
  );

  await page.fill('#desired-patch', '{ "samplingIntervalMs": 700 }');
  await page.click('#desired-form button[type=submit]');
  await waitFor(async () => /Saved as desired version \d+/.test(await text('#desired-status')), 10_000, 'the save');
  const version = Number(/version (\d+)/.exec((await page.textContent('#desired-status')) ?? '')![1]);
  // Round trip: cloud → desired feed → collector → agent applies → reported → cloud → SSE → page.
  await waitFor(
    async () => (await text('#applied')).startsWith(`Applied by the device: version ${version}`),
    45_000,
    'the device applying it',
  );
  const reported = JSON.parse((await page.textContent('#reported-props')) ?? '{}') as {
    applied?: { samplingIntervalMs?: { simulator?: number } };
  };
  t.equal(reported.applied?.samplingIntervalMs?.simulator, 700, 'the agent runs the new sampling interval');
  await waitFor(async () => (await text('#audit')).includes('desired'), 10_000, 'the audit entry');
  t.pass('the change is in the audit trail');

  // Optimistic concurrency as the operator sees it: they start typing, someone else changes desired
  // through the API meanwhile, and applying is refused with the 412 shown, the twin reloaded.
  await page.fill('#desired-patch', '{ "samplingIntervalMs": 600 }');
  const behind = await api('PATCH', '/v1/twins/sim-1/desired', { samplingIntervalMs: 900 }, { 'if-match': '*' });
  t.equal(behind.status, 200, "a change behind the page's back");
  await page.click('#desired-form button[type=submit]');
  await waitFor(async () => (await text('#desired-status')).startsWith('Conflict'), 15_000, 'the conflict message');
  t.match(await text('#desired-status'), /412/, 'the user is told of the stale ETag');
  t.equal(await page.getAttribute('#desired-status', 'class'), 'error');
  await waitFor(
    async () =>
      (JSON.parse((await page.textContent('#desired-doc')) ?? '{}') as { samplingIntervalMs?: number }).samplingIntervalMs === 900,
    10_000,
    'the reloaded desired document',
  );
  t.equal((await api('GET', '/v1/twins/sim-1')).body.desired.samplingIntervalMs, 900, 'the refused change did not overwrite the other one');

  // A direct method from the twin page: cloud → channel → collector → agent → back, answer shown.
  await page.fill('#method-form input[name=method]', 'ping');
  await page.fill('#method-payload', 'null');
  await page.click('#method-form button[type=submit]');
  await waitFor(async () => /^ping answered 200 in \d+ ms\.$/.test(await text('#method-status')), 20_000, 'the ping answer');
  t.match(JSON.parse((await page.textContent('#method-answer')) ?? '{}'), { pong: true, deviceId: 'sim-1' }, "the agent's answer is shown");
  await page.fill('#method-form input[name=method]', 'noSuchMethod');
  await page.click('#method-form button[type=submit]');
  await waitFor(async () => /^noSuchMethod answered 404/.test(await text('#method-status')), 20_000, 'the 404 answer');
  t.equal(await page.getAttribute('#method-status', 'class'), 'error', "a device's error status is shown as an error");
  t.match(await text('#method-answer'), /getDiagnostics/, 'listing the methods the agent knows');
  await waitFor(async () => (await text('#audit')).includes('method.invoke'), 15_000, 'the method call in the audit trail');
  t.pass('the call is audited');
  await page.screenshot({ path: join(artifacts, 'dashboard-twin.png'), fullPage: true });

  await page.setViewportSize({ width: 768, height: 1024 });
  await page.waitForTimeout(300);
  // A function (not a string) is passed to the page over CDP, which the CSP allows.
  const [scrollWidth, innerWidth] = await page.evaluate(() => {
    const w = globalThis as unknown as { document: { documentElement: { scrollWidth: number } }; innerWidth: number };
    return [w.document.documentElement.scrollWidth, w.innerWidth];
  });
  t.ok(scrollWidth <= innerWidth + 1, `no horizontal scrolling on a tablet (${scrollWidth} vs ${innerWidth} px)`);
  t.same(consoleErrors, [], 'no console errors');
});
