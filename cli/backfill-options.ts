/** `edgetwin cloud backfill`'s options: apart from cli/backfill.ts so that --help and usage errors load nothing heavy. */
import type { Subcommand } from './args.js';

export const backfillSubcommand: Subcommand = {
  usage: 'Usage: edgetwin cloud backfill --file CSV --device ID --site SITE [options]',
  about: `Posts the rows of a CSV file (NAB's timestamp,value or timestamp,a,b,… with one metric per
column) to a running cloud's POST /v1/ingest, with their original timestamps. Identity of a row:
(device, --epoch, its row number), so running it again stores nothing twice. The token comes from
EDGETWIN_CLOUD_TOKEN (a collector token of the site, or an admin token).`,
  footer: 'Progress goes to stderr: a bar on a terminal, lines otherwise (EDGETWIN_PROGRESS=bar|lines|off).',
  options: {
    file: { type: 'string', value: 'CSV', help: 'the CSV file to load', required: true },
    device: { type: 'string', value: 'ID', help: 'device the readings belong to', required: true },
    site: { type: 'string', value: 'SITE', help: 'site of the device', required: true },
    url: { type: 'string', value: 'URL', help: 'cloud twin API', default: 'http://127.0.0.1:8480' },
    epoch: { type: 'string', value: 'N', help: 'identity epoch of the backfilled rows (agents start at 1)', unit: 'count', default: '0' },
    unit: { type: 'string', value: 'U', help: 'unit of every column', default: '1' },
    'timestamp-column': { type: 'string', value: 'NAME', help: 'column with the sample time', default: 'timestamp' },
    'batch-readings': { type: 'string', value: 'N', help: 'readings per POST', unit: 'count', default: '5000' },
    'timeout-ms': { type: 'string', value: 'N', help: 'per request, retried on timeouts and 5xx', unit: 'ms', default: '30000' },
    help: { type: 'boolean', short: 'h', help: 'show this help' },
  },
};
