/**
 * `edgetwin cloud backfill`: loads history recorded before a device ran edgetwin (a CSV export,
 * NAB's `timestamp,value` files) into a running cloud through its ingest API, so it lands in
 * bronze, silver and gold like any other telemetry. Rows get the identity (device, --epoch, row
 * number): agents start at epoch 1, so the default epoch 0 never collides with live data, and a
 * backfill run again (after a failure, or twice by mistake) is stored once.
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { Backoff, sleep } from '../common/backoff.js';
import { csvRows } from '../common/csv.js';
import { redactUrl } from '../common/redact.js';
import { EdgetwinError, ErrorCodes, errorMessage } from '../common/errors.js';
import { Progress, progressModeFromEnv } from '../common/progress.js';
import { DEVICE_ID_PATTERN, spliceBatch } from '../common/wire/record.js';
import { spliceEnvelope } from '../common/wire/ingest-envelope.js';
import { intOption, str, usage, type OptionValues } from './args.js';

const gzip = promisify(gzipCb);

/** Lines of a file (a rough total for the progress: one pass, no parsing). */
function countLines(file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    createReadStream(file)
      .on('data', (chunk: string | Buffer) => {
        const d = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
        for (let i = d.indexOf(10); i >= 0; i = d.indexOf(10, i + 1)) n++;
      })
      .on('end', () => resolve(n))
      .on('error', reject);
  });
}

export interface BackfillReport {
  rows: number;
  /** Readings posted (accepted by the cloud's ingest, whatever it did with them). */
  readings: number;
  /** Rows of the file refused before posting (bad timestamp, bad value). */
  refused: number;
  posts: number;
  /** What the cloud's answers said: newly stored, already stored (by identity), quarantined, rejected. */
  stored: number;
  duplicates: number;
  quarantined: number;
  rejected: number;
}

interface IngestAnswer {
  stored?: number;
  duplicates?: number;
  quarantined?: number;
  rejected?: unknown[];
}

/** Posts one batch, retrying what a retry can fix (network, 408, 429, 5xx); anything else is the caller's to fix. */
async function post(
  url: string,
  token: string | undefined,
  batchId: string,
  body: Buffer,
  timeoutMs: number,
  backoff: Backoff,
): Promise<IngestAnswer> {
  for (let attempt = 1; ; attempt++) {
    let status = 0;
    let text = '';
    try {
      const res = await fetch(`${url.replace(/\/$/, '')}/v1/ingest`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          'idempotency-key': batchId,
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = res.status;
      text = await res.text();
      if (status >= 200 && status < 300) {
        try {
          return JSON.parse(text) as IngestAnswer;
        } catch {
          return {};
        }
      }
    } catch (err) {
      text = errorMessage(err);
    }
    const retryable = status === 0 || status === 408 || status === 429 || status >= 500;
    if (!retryable || attempt >= 8) {
      const what = status ? `answered ${status}: ${text.slice(0, 300)}` : `unreachable: ${text}`;
      const hint = status === 401 || status === 403 ? ' (set EDGETWIN_CLOUD_TOKEN to a collector token of --site, or an admin token)' : '';
      throw new EdgetwinError(ErrorCodes.SINK, `backfill: ${redactUrl(url)}/v1/ingest ${what}${hint}`, { details: { status } });
    }
    await sleep(backoff.next());
  }
}

export async function runBackfill(
  values: OptionValues,
  out: (s: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<BackfillReport> {
  const cmd = 'edgetwin cloud backfill';
  const file = str(values, 'file')!;
  const device = str(values, 'device')!;
  const site = str(values, 'site')!;
  for (const k of ['file', 'device', 'site']) if (!str(values, k)) usage(`${cmd}: --${k} is required; run '${cmd} --help'`);
  if (!new RegExp(DEVICE_ID_PATTERN).test(device)) usage(`${cmd}: --device "${device}" is not a valid device id`);
  try {
    statSync(file);
  } catch (err) {
    usage(`${cmd}: --file ${file}: ${errorMessage(err)}`);
  }
  const url = str(values, 'url') ?? 'http://127.0.0.1:8480';
  const epoch = intOption(cmd, 'epoch', str(values, 'epoch'), 0);
  const perPost = intOption(cmd, 'batch-readings', str(values, 'batch-readings'), 5000, 1, 100_000);
  const timeoutMs = intOption(cmd, 'timeout-ms', str(values, 'timeout-ms'), 30_000, 100);
  const token = env['EDGETWIN_CLOUD_TOKEN'];
  const fileKey = createHash('sha256')
    .update(`${basename(file)}|${device}|${epoch}`)
    .digest('hex')
    .slice(0, 16);

  const progress = new Progress(`backfill ${basename(file)}`, Math.max(1, (await countLines(file)) - 1), {
    mode: progressModeFromEnv(env),
  });
  const report: BackfillReport = { rows: 0, readings: 0, refused: 0, posts: 0, stored: 0, duplicates: 0, quarantined: 0, rejected: 0 };
  const backoff = new Backoff({ initialMs: 200, maxMs: 5000 });
  let pending: string[] = [];
  let seq = 0;
  let inflight: Promise<void> = Promise.resolve();
  let failure: unknown;
  const ac = new AbortController();
  const flush = (): void => {
    if (pending.length === 0) return;
    const first = seq - pending.length + 1;
    // Deterministic batch id: a rerun posts the same batches under the same keys.
    const batchId = `backfill-${fileKey}-${first}-${seq}`;
    const json = spliceEnvelope(batchId, site, [spliceBatch(device, epoch, pending)]);
    const n = pending.length;
    // Progress counts rows whose readings the cloud has acknowledged, not rows read ahead.
    const rowsDone = report.rows;
    pending = [];
    // One POST in flight while the next batch is read: the file is read once, memory stays bounded.
    inflight = inflight
      .then(async () => {
        const a = await post(url, token, batchId, await gzip(json, { level: 1 }), timeoutMs, backoff);
        report.stored += a.stored ?? 0;
        report.duplicates += a.duplicates ?? 0;
        report.quarantined += a.quarantined ?? 0;
        report.rejected += a.rejected?.length ?? 0;
        report.readings += n;
        report.posts++;
        progress.update(rowsDone, `${report.readings} readings`);
      })
      .catch((err: unknown) => {
        failure ??= err;
        ac.abort();
      });
  };
  const rows = csvRows({
    file,
    unit: str(values, 'unit') ?? '1',
    timestampColumn: str(values, 'timestamp-column') ?? 'timestamp',
    signal: ac.signal,
  });
  for await (const chunk of rows) {
    for (const row of chunk) {
      for (const err of row.refused) {
        report.refused++;
        out(`${err.code}: ${err.message} (skipped)`);
      }
      if (row.tooLong) continue;
      report.rows++;
      for (const r of row.readings) {
        seq++;
        pending.push(JSON.stringify({ seq, ts: row.ts, metric: r.metric, value: r.value, unit: r.unit }));
        if (pending.length >= perPost) flush();
      }
    }
    // Waiting on the POST in flight is the back-pressure: at most two batches in memory.
    await inflight;
    if (ac.signal.aborted) break;
  }
  flush();
  await inflight;
  if (failure) throw failure;
  progress.done(report.rows, `${report.readings} readings`);
  return report;
}
