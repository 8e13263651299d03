/**
 * The Prometheus alerting rules in deploy/prometheus are valid (`promtool check rules`) and fire,
 * stay quiet and resolve as their unit tests say (`promtool test rules`: synthetic series for the
 * API p99, lake writer, Event Hubs lag, data quality, stalled sink, outbox drops, daemon down).
 * promtool comes with Debian's `prometheus` package (installed by .ci/run). Every metric a rule
 * reads must be one a daemon exports: a renamed metric would leave its alert silent forever.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = join(root, 'deploy/prometheus');

function promtool(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

t.test('promtool check rules', async (t) => {
  const r = promtool(['check', 'rules', 'edgetwin-alerts.yml']);
  t.equal(r.status, 0, r.out);
  t.match(r.out, /SUCCESS: \d+ rules found/);
});

t.test('promtool test rules', async (t) => {
  const r = promtool(['test', 'rules', 'edgetwin-alerts.test.yml']);
  t.equal(r.status, 0, r.out);
});

t.test('every metric a rule reads is exported by some daemon', async (t) => {
  const rules = readFileSync(join(dir, 'edgetwin-alerts.yml'), 'utf8');
  const used = new Set([...rules.matchAll(/\b(edgetwin_[a-z_]+?)(?:_bucket|_count|_sum)?\b(?=[{[\s)])/g)].map((m) => m[1]!));
  const sources = ['agent', 'collector', 'cloud', 'common']
    .flatMap((d) => listTs(join(root, d)))
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
  // Outbox/spool metrics are named `${prefix}_…`: accept a prefix that is declared as a metricPrefix.
  const prefixes = [...sources.matchAll(/metricPrefix: '(edgetwin_[a-z_]+)'/g)].map((m) => m[1]!);
  for (const m of used) {
    const known = sources.includes(`'${m}'`) || prefixes.some((p) => m.startsWith(`${p}_`));
    t.ok(known, `${m} is exported`);
  }
  t.ok(used.size >= 10, `${used.size} metrics checked`);
});

function listTs(d: string): string[] {
  return readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listTs(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : [],
  );
}

t.test('every runbook an alert names exists, with its section', async (t) => {
  const rules = readFileSync(join(dir, 'edgetwin-alerts.yml'), 'utf8');
  const links = [...rules.matchAll(/runbook: (docs\/runbooks\/[a-z0-9-]+\.md)(?:#([a-z0-9-]+))?/g)];
  t.ok(links.length >= 10);
  for (const [, file, anchor] of links) {
    const text = readFileSync(join(root, file!), 'utf8');
    if (anchor) {
      const headings = [...text.matchAll(/^#+ (.+)$/gm)].map((m) =>
        m[1]!
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, '')
          .replace(/ /g, '-'),
      );
      t.ok(headings.includes(anchor), `${file}#${anchor}`);
    }
  }
});
