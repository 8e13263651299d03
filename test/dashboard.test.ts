/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) against a running
 * demo: twins appear, a chart renders with data, a desired change made in the page reaches the
 * agent and comes back applied, no console errors; screenshots are kept in test-artifacts/.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import t from 'tap';
import { freePort, spawnCli } from './helpers/cli.js';
import { tempDir, waitFor } from './helpers/util.js';

const CHROMIUM = '/usr/bin/chromium';
const artifacts = new URL('../test-artifacts/', import.meta.url).pathname;

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
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  mkdirSync(artifacts, { recursive: true });

  await page.goto(`${url}/dashboard/#token=${admin}`);
  // The page's CSP forbids eval, so waits poll with locators rather than page.waitForFunction strings.
  const text = async (sel: string): Promise<string> => (await page.textContent(sel)) ?? '';
  await waitFor(async () => (await page.locator('#twins tbody tr').count()) === 3, 30_000, 'three rows');
  t.same((await page.locator('#twins tbody tr th a').allTextContents()).sort(), ['sim-1', 'sim-2', 'sim-3'], 'the three demo twins are listed');
  t.notOk(page.url().includes('token='), 'the token is taken out of the address bar');
  await waitFor(async () => (await text('#live')) === 'live', 10_000, 'the live stream');
  await page.screenshot({ path: join(artifacts, 'dashboard-overview.png') });

  await page.click('a[href="#/twins/sim-1"]');
  await page.waitForSelector('#chart canvas', { timeout: 30_000 });
  // The chart reads history from the lakehouse, which lands readings in micro-batches.
  await page.selectOption('#chart-form select[name=metric]', 'temperature');
  await waitFor(async () => /^temperature over the last 1 h: [1-9]\d* points$/.test((await page.getAttribute('#chart', 'aria-label')) ?? ''), 40_000, 'a temperature chart with data');
  t.match(await text('#chart-note'), /^[1-9]\d* points from (silver|gold)/);

  await page.fill('#desired-patch', '{ "samplingIntervalMs": 700 }');
  await page.click('#desired-form button[type=submit]');
  await waitFor(async () => /Saved as desired version \d+/.test(await text('#desired-status')), 10_000, 'the save');
  const version = Number(/version (\d+)/.exec((await page.textContent('#desired-status')) ?? '')![1]);
  // Round trip: cloud → desired feed → collector → agent applies → reported → cloud → SSE → page.
  await waitFor(async () => (await text('#applied')).startsWith(`Applied by the device: version ${version}`), 45_000, 'the device applying it');
  const reported = JSON.parse((await page.textContent('#reported-props')) ?? '{}') as { applied?: { samplingIntervalMs?: { simulator?: number } } };
  t.equal(reported.applied?.samplingIntervalMs?.simulator, 700, 'the agent runs the new sampling interval');
  await waitFor(async () => (await text('#audit')).includes('desired'), 10_000, 'the audit entry');
  t.pass('the change is in the audit trail');
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
