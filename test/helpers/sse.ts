/** A minimal Server-Sent Events client for tests: every event with its id, and the Last-Event-ID to resume with. */
import { request } from 'undici';

export interface SseEvent {
  id: number | undefined;
  event: string;
  data: { id: number; type: string; site: string; device: string | null; data: Record<string, unknown> };
}

export interface SseStream {
  events: SseEvent[];
  status: number;
  contentType: string;
  close(): void;
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const ac = new AbortController();
  const res = await request(url, { headers, signal: ac.signal });
  const events: SseEvent[] = [];
  let buf = '';
  res.body.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const id = /^id: (\d+)$/m.exec(block)?.[1];
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) events.push({ id: id === undefined ? undefined : Number(id), event, data: JSON.parse(data) as SseEvent['data'] });
    }
  });
  res.body.on('error', () => undefined);
  return { events, status: res.statusCode, contentType: String(res.headers['content-type']), close: () => ac.abort() };
}
