/**
 * `--register <cloud url>` of the trainers (npm run train:rul, npm run train:model): the new
 * version goes to the cloud's model registry as a candidate — stored, checked by onnxruntime,
 * signed when the registry signs, listed with `stage: candidate` and its validation figures in its
 * entry, promoted nowhere. The admin token comes from EDGETWIN_TOKEN (never a flag: shells keep history).
 */
import type { AnyModelEntry } from '../common/models/manifest.js';

/** Uploads the new version to the cloud registry (POST /v1/models) as a candidate: stored and signed there, promoted nowhere. */
export async function registerCandidate(cloudUrl: string, entry: AnyModelEntry, bytes: Buffer): Promise<void> {
  const token = process.env['EDGETWIN_TOKEN'];
  if (!token) throw new Error('--register needs EDGETWIN_TOKEN (an admin token) in the environment');
  const res = await fetch(new URL('/v1/models', cloudUrl), {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ entry, file: bytes.toString('base64') }),
  });
  const body = await res.text();
  if (!res.ok) throw new Error(`registry refused ${entry.version}: ${res.status} ${body}`);
  console.error(`[register] ${entry.version} stored as a candidate in ${cloudUrl} (${res.status}): ${body}`);
}
