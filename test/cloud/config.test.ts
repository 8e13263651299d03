/** The cloud's config is checked at start-up and names the key at fault. */
import t from 'tap';
import { lakehouseRoot, loadCloudConfig } from '../../cloud/config.js';

t.test('cloud config: defaults, env, and errors that name the key', async (t) => {
  const cfg = loadCloudConfig(undefined, { stateDir: '/srv/cloud' }, {});
  t.equal(lakehouseRoot(cfg), '/srv/cloud/lakehouse');
  t.match(cfg, {
    auth: { anonymousRole: 'none', openWhenNoTokens: true },
    lakehouse: { flushIntervalMs: 1000 },
    eventHubs: { enabled: false, checkpoint: { store: 'sqlite' } },
  });
  const env = loadCloudConfig(
    undefined,
    {},
    { EDGETWIN_LAKEHOUSE_ROOT: '/mnt/lake', EDGETWIN_INGEST_TOKENS: 'plant-1:abcdefghijklmnopqrstuvwxyz, bare-token-0123456789' },
  );
  t.equal(lakehouseRoot(env), '/mnt/lake');
  t.same(env.ingest.tokens, ['plant-1:abcdefghijklmnopqrstuvwxyz', 'bare-token-0123456789']);
  const bad: [unknown, RegExp][] = [
    [{ quality: { ranges: { temp: { min: 5, max: 1 } } } }, /"quality\.ranges\.temp" has min > max/],
    [{ quality: { notBefore: 'the day before yesterday' } }, /"quality\.notBefore" must be an ISO 8601 instant/],
    [{ twins: { staleAfterMs: 10_000, offlineAfterMs: 5000 } }, /"twins\.offlineAfterMs"/],
    [{ lakehouse: { flushIntervalMs: 0 } }, /"lakehouse\.flushIntervalMs"/],
    [{ auth: { anonymousRole: 'admin' } }, /"auth\.anonymousRole"/],
    [{ eventHubs: { enabled: true } }, /"eventHubs\.connectionString" or eventHubs\.fullyQualifiedNamespace is required/],
    [
      { eventHubs: { enabled: true, connectionString: 'Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b' } },
      /"eventHubs\.eventHubName"/,
    ],
    [
      {
        eventHubs: {
          enabled: true,
          connectionString: 'Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b;EntityPath=h',
          checkpoint: { store: 'blob' },
        },
      },
      /"eventHubs\.checkpoint\.blobConnectionString"/,
    ],
    [{ ingest: { tokens: ['short'] } }, /"ingest\.tokens\.0"/],
    [{ lakehouse: { retention: { silverDays: -1 } } }, /"lakehouse\.retention\.silverDays"/],
  ];
  for (const [overrides, msg] of bad) {
    t.throws(() => loadCloudConfig(undefined, overrides, {}), { code: 'EDGETWIN_ERR_CONFIG', message: msg }, msg.source);
  }
});
