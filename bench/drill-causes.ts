/**
 * Faults the alert drill (bench/drill-alerts.ts) causes for real, kept apart so the drill reads as
 * its list of rules: a process that holds the cloud database's write lock in bursts, the
 * lakehouse's scratch folder turned into a file, and an Event Hubs producer that keeps sending.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { EventHubProducerClient } from '@azure/event-hubs';

/** Node script (argv[1]: the database): holds its write lock for 400 ms of every 500 (a maintenance job gone wrong), for 12 s. */
export const LOCKER = `
import Database from 'better-sqlite3';
const db = new Database(process.argv[1]);
db.pragma('busy_timeout = 10000');
const end = Date.now() + 12000;
while (Date.now() < end) {
  db.exec('BEGIN IMMEDIATE');
  const t = Date.now(); while (Date.now() - t < 400) {}
  db.exec('COMMIT');
  await new Promise((r) => setTimeout(r, 100));
}
db.close();
`;

/** The lakehouse writer fails (its scratch folder becomes a file) until `restore()`. */
export function breakScratch(scratch: string): { restore(): void } {
  renameSync(scratch, `${scratch}.aside`);
  writeFileSync(scratch, 'not a folder');
  return {
    restore() {
      rmSync(scratch);
      renameSync(`${scratch}.aside`, scratch);
    },
  };
}

/**
 * A device's telemetry into an Event Hub, 20 events of 40 readings every 250 ms (~50 KB), as a
 * busy site would send it, until `stop()`.
 */
export class EventHubFeed {
  private readonly producer: EventHubProducerClient;
  private running = false;
  private loop: Promise<void> | undefined;
  private seq = 0;

  constructor(
    connectionString: string,
    private readonly site: string,
    private readonly device = 'eh-probe',
  ) {
    this.producer = new EventHubProducerClient(connectionString);
  }

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  async close(): Promise<void> {
    this.running = false;
    await this.loop?.catch(() => undefined);
    await this.producer.close();
  }

  private async run(): Promise<void> {
    while (this.running) {
      const batch = await this.producer.createBatch({ partitionKey: this.device });
      for (let i = 0; i < 20; i++) {
        const now = Date.now();
        const readings = Array.from({ length: 40 }, () => ({ seq: ++this.seq, ts: now, metric: 'flow', value: 12.5, unit: 'l/min' }));
        const body = Buffer.from(JSON.stringify({ v: 1, device: this.device, epoch: 1, readings }));
        batch.tryAdd({ body, contentType: 'application/json', properties: { 'edgetwin-site': this.site } });
      }
      await this.producer.sendBatch(batch);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
