/**
 * Real servers on 127.0.0.1 that receive alert notifications: an HTTP receiver (webhook, Slack,
 * Teams) whose answers a test scripts, and an SMTP server (the `smtp-server` package) with
 * STARTTLS and authentication that keeps every message it accepted.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface HttpReceiver {
  url: string;
  received: Received[];
  /** Answers, in order, for the next requests (status, optional headers; 'hang' never answers); then 200. */
  script(...answers: (number | 'hang' | { status: number; headers: Record<string, string> })[]): void;
  /** Resolves when `n` requests have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startHttpReceiver(): Promise<HttpReceiver> {
  const received: Received[] = [];
  const answers: (number | 'hang' | { status: number; headers: Record<string, string> })[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const a = answers.shift() ?? 200;
      if (a === 'hang') return; // a destination that accepts the connection and never answers
      received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      for (const w of waiters.filter((x) => received.length >= x.n)) w.resolve();
      const status = typeof a === 'number' ? a : a.status;
      res.writeHead(status, typeof a === 'number' ? {} : a.headers);
      res.end(status < 300 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    script: (...a) => answers.push(...a),
    waitFor: (n, timeoutMs = 10_000) =>
      received.length >= n
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`receiver: ${received.length} of ${n} requests arrived`)), timeoutMs);
            waiters.push({ n, resolve: () => (clearTimeout(t), resolve()) });
          }),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface Mail {
  from: string;
  to: string[];
  raw: string;
  /** True when the message came over TLS (STARTTLS done before MAIL FROM). */
  secure: boolean;
  user: string | undefined;
}

export interface SmtpReceiver {
  port: number;
  mails: Mail[];
  /** MAIL FROM commands seen on a connection that was not (yet) encrypted. */
  plaintextAttempts: number;
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** `tls`: key/cert for STARTTLS (omit to run a server that offers none); `users`: user → password. */
export async function startSmtpReceiver(opts: { key?: Buffer; cert?: Buffer; users: Record<string, string> }): Promise<SmtpReceiver> {
  const mails: Mail[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const state = { plaintextAttempts: 0 };
  const options: SMTPServerOptions = {
    ...(opts.key && opts.cert ? { key: opts.key, cert: opts.cert } : { hideSTARTTLS: true, allowInsecureAuth: true }),
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username && opts.users[auth.username] === auth.password) return cb(null, { user: auth.username });
      cb(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
    },
    onMailFrom(_addr, session, cb) {
      if (!session.secure) state.plaintextAttempts++;
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
          secure: session.secure,
          user: session.user as string | undefined,
        });
        for (const w of waiters.filter((x) => mails.length >= x.n)) w.resolve();
        cb();
      });
    },
  };
  const server = new SMTPServer(options);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    mails,
    get plaintextAttempts() {
      return state.plaintextAttempts;
    },
    waitFor: (n, timeoutMs = 10_000) =>
      mails.length >= n
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`smtp: ${mails.length} of ${n} mails arrived`)), timeoutMs);
            waiters.push({ n, resolve: () => (clearTimeout(t), resolve()) });
          }),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
