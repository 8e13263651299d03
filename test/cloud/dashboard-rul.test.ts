/**
 * The dashboard's failure-prediction and drift views in a real browser (Debian's Chromium driven by
 * playwright-core) against a running cloud: the twin page charts each asset's remaining useful life
 * with the device's threshold and marks the newest prediction below it; the Drift page shows a
 * cohort whose inputs moved away from its frozen baseline, with the drifting stream listed; no
 * console errors. Data comes in through the ingest API as a collector would send it.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import t from 'tap';
import { request } from 'undici';
import { Histogram } from '../../common/drift/histogram.js';
import type { Reading } from '../../common/wire/record.js';
import { variant } from '../helpers/models.js';
import { driftReading, gauss, rulPrediction } from '../helpers/readings.js';
import { startCloud, tempDir, waitFor } from '../helpers/stack.js';

const CHROMIUM = '/usr/bin/chromium';
const DAY = 86_400_000;
const artifacts = new URL('../../test-artifacts/', import.meta.url).pathname;

t.test('dashboard: RUL chart with its threshold, drift page with a drifting cohort', async (t) => {
  t.ok(existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM}`);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const cloud = await startCloud(dir, { drift: { windowMs: DAY, baselineMs: DAY, evaluateIntervalMs: 3_600_000 } });
  t.teardown(() => cloud.stop());
  const post = async (path: string, body: unknown): Promise<number> => {
    const r = await request(`${cloud.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    await r.body.text();
    return r.statusCode;
  };
  // A model version in the registry (the committed forecaster under another version).
  const model = variant('forecaster-9.0.0');
  t.equal(await post('/v1/models', model), 201);

  const now = Date.now();
  const readings: Reading[] = [];
  let seq = 0;
  // Two assets, 50 hourly predictions each, going down to below the threshold of 30.
  for (const [asset, end] of [
    ['engine-1', 18],
    ['engine-2', 70],
  ] as const) {
    for (let i = 0; i < 50; i++) {
      const rul = end + (49 - i) * 2;
      readings.push(rulPrediction(++seq, now - (49 - i) * 3_600_000, asset, rul, rul < 30));
    }
  }
  // Drift histograms of `temp`: the baseline three days ago, today 0.5 σ higher.
  const g = gauss(3);
  const normal = (shift: number): number[] => Array.from({ length: 4000 }, () => g() + shift);
  for (const [from, shift] of [
    [now - 3 * DAY, 0],
    [now - 3 * DAY + 3_600_000, 0],
    [now - 2 * 3_600_000, 0.5],
  ] as const) {
    const h = Histogram.of({ lo: -8, hi: 8, bins: 64 }, normal(shift));
    readings.push(driftReading(++seq, from, from + 3_600_000, 'temp', h, 'forecaster-9.0.0'));
  }
  const status = await post('/v1/ingest', {
    v: 1,
    batchId: 'rul-dashboard-1',
    site: 'plant-1',
    messages: [
      { v: 1, device: 'eng-1', epoch: 1, readings },
      { v: 1, kind: 'reported', device: 'eng-1', ts: now, patch: { failure: { model: 'rul-1.2.0', threshold: 30, assets: 2 } } },
    ],
  });
  t.equal(status, 200, 'predictions, histograms and the reported threshold are ingested');
  t.equal(await post('/v1/models/forecaster/forecaster-9.0.0/drift/evaluate', {}), 200, 'drift evaluated');

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  mkdirSync(artifacts, { recursive: true });

  await page.goto(`${cloud.url}/dashboard/#/twins/eng-1`);
  const rul = page.locator('#rul');
  await waitFor(async () => (await page.locator('[data-rul-chart]').count()) === 2, 20_000, 'two RUL charts');
  t.ok(await rul.isVisible(), 'the RUL section shows');
  await waitFor(
    async () => (await page.locator('[data-rul-chart="engine-1"]').getAttribute('data-points')) === '50',
    10_000,
    'the history drawn',
  );
  t.match(await rul.locator('[data-rul-note]').textContent(), /Alert below 30 steps/, 'the threshold, from what the device reports');
  t.match(await rul.locator('[data-asset="engine-1"] h3').textContent(), /18 cycles.*below threshold/, 'engine-1 is below it');
  t.match(await rul.locator('[data-asset="engine-2"] h3').textContent(), /70 cycles.*ok/);
  t.ok((await page.locator('[data-rul-chart="engine-1"] canvas').count()) > 0, 'a chart is drawn');
  t.ok(
    (await page.locator('[data-rul-chart="engine-1"] .u-legend .u-label').allTextContents()).includes('threshold'),
    'the chart draws the threshold as a series of its own',
  );
  await page.screenshot({ path: join(artifacts, 'dashboard-rul.png') });

  await page.goto(`${cloud.url}/dashboard/#/drift`);
  const cohort = page.locator('section[data-cohort="site:plant-1"]');
  await waitFor(async () => (await cohort.count()) === 1, 20_000, 'the cohort section');
  t.match(await cohort.locator('h2').textContent(), /1 drifting/);
  t.equal(await cohort.locator('[data-drifting="temp input"]').count(), 1, 'the drifting stream is listed');
  t.match(await cohort.textContent(), /baseline/, 'the reference is the cohort baseline');
  await page.screenshot({ path: join(artifacts, 'dashboard-drift.png') });
  t.same(errors, [], 'no console errors');
});
