/**
 * Alerts, silences and rules in the cloud's store (tables from migration 0004-alerts). Reads for
 * the API and the dashboard, and the operator's writes — acknowledge, silence, rule changes — each
 * in one transaction with its audit entry.
 */
import { randomBytes } from 'node:crypto';
import { EdgetwinError, ErrorCodes } from '../../common/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Principal } from '../auth/tokens.js';
import type { Queryable, Store } from '../store/store.js';
import { Where } from '../store/where.js';
import { normalizeRule, type Rule, type RuleSpec } from './rules.js';
import type { Alert, AlertState } from './types.js';

export interface AlertRow {
  id: string;
  rule_id: string;
  fingerprint: string;
  alert_key: string;
  kind: string;
  rule_name: string;
  severity: Alert['severity'];
  state: AlertState;
  site: string | null;
  device: string | null;
  summary: string;
  value: number | null;
  labels: string;
  started_at: number;
  fired_at: number | null;
  resolved_at: number | null;
  last_seen_at: number;
  notified_at: number | null;
  acked_at: number | null;
  acked_by: string | null;
  ack_note: string | null;
}

export interface Silence {
  id: string;
  ruleId: string | null;
  site: string | null;
  device: string | null;
  startsAt: string;
  endsAt: string;
  comment: string;
  createdBy: string;
  active: boolean;
}

interface SilenceRow {
  id: string;
  rule_id: string | null;
  site: string | null;
  device: string | null;
  starts_at: number;
  ends_at: number;
  comment: string;
  created_by: string;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(Number(ms)).toISOString());
export const newId = (prefix: string): string => `${prefix}_${randomBytes(6).toString('hex')}`;

export function silenceMatches(
  s: Pick<SilenceRow, 'rule_id' | 'site' | 'device'>,
  a: Pick<AlertRow, 'rule_id' | 'site' | 'device'>,
): boolean {
  return (
    (s.rule_id === null || s.rule_id === a.rule_id) &&
    (s.site === null || s.site === a.site) &&
    (s.device === null || s.device === a.device)
  );
}

export function toAlert(r: AlertRow, silences: readonly SilenceRow[]): Alert {
  return {
    id: r.id,
    ruleId: r.rule_id,
    ruleName: r.rule_name,
    kind: r.kind,
    severity: r.severity,
    state: r.state,
    key: r.alert_key,
    site: r.site,
    device: r.device,
    summary: r.summary,
    value: r.value,
    labels: JSON.parse(r.labels) as Record<string, string>,
    startedAt: iso(r.started_at)!,
    firedAt: iso(r.fired_at),
    resolvedAt: iso(r.resolved_at),
    lastSeenAt: iso(r.last_seen_at)!,
    acknowledgedAt: iso(r.acked_at),
    acknowledgedBy: r.acked_by,
    ackNote: r.ack_note,
    silenced: r.state !== 'resolved' && silences.some((s) => silenceMatches(s, r)),
  };
}

export interface AlertQuery {
  /** `open` = pending or firing. */
  state?: AlertState | 'open' | 'all';
  site?: string | undefined;
  device?: string | undefined;
  ruleId?: string | undefined;
  limit: number;
}

export class AlertStore {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
  ) {}

  async activeSilences(q: Queryable, now: number): Promise<SilenceRow[]> {
    return q.all<SilenceRow>('SELECT * FROM alert_silences WHERE starts_at <= ? AND ends_at > ?', [now, now]);
  }

  async list(q: AlertQuery, now = Date.now()): Promise<Alert[]> {
    const where = new Where();
    const state = q.state ?? 'open';
    if (state === 'open') where.add("state <> 'resolved'");
    else if (state !== 'all') where.add('state = ?', state);
    where.given('site = ?', q.site).given('device = ?', q.device).given('rule_id = ?', q.ruleId);
    const rows = await this.store.all<AlertRow>(`SELECT * FROM alerts ${where.clause} ORDER BY started_at DESC, id LIMIT ?`, [
      ...where.params,
      q.limit,
    ]);
    const silences = await this.activeSilences(this.store, now);
    return rows.map((r) => toAlert(r, silences));
  }

  async get(id: string, now = Date.now()): Promise<Alert | undefined> {
    const r = await this.store.get<AlertRow>('SELECT * FROM alerts WHERE id = ?', [id]);
    return r ? toAlert(r, await this.activeSilences(this.store, now)) : undefined;
  }

  /** Acknowledges an open alert (audited); 404 when unknown, 409 when already resolved. */
  async ack(id: string, who: Principal, note: string | null, now = Date.now()): Promise<Alert> {
    await this.store.tx(async (tx) => {
      const r = await tx.get<AlertRow>(`SELECT * FROM alerts WHERE id = ?${tx.dialect.forUpdate}`, [id]);
      if (!r) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no alert ${id}`);
      if (r.state === 'resolved') throw new EdgetwinError(ErrorCodes.CONFLICT, `alert ${id} is resolved already`);
      await tx.run('UPDATE alerts SET acked_at = ?, acked_by = ?, ack_note = ? WHERE id = ?', [now, who.name, note, id]);
      await this.audit.record(
        tx,
        who,
        'alert.ack',
        { device: r.device, site: r.site },
        { alert: id, rule: r.rule_id, key: r.alert_key, note },
        now,
      );
      tx.emit({ type: 'alert', site: r.site ?? '', device: r.device, data: { id, state: r.state, acknowledgedBy: who.name } });
    });
    return (await this.get(id, now))!;
  }

  async silences(includeExpired: boolean, site: string | undefined, now = Date.now()): Promise<Silence[]> {
    const rows = await this.store.all<SilenceRow>(
      `SELECT * FROM alert_silences WHERE ${includeExpired ? '1 = 1' : 'ends_at > ?'}${site !== undefined ? ' AND site = ?' : ''} ORDER BY created_at DESC LIMIT 500`,
      [...(includeExpired ? [] : [now]), ...(site !== undefined ? [site] : [])],
    );
    return rows.map((s) => ({
      id: s.id,
      ruleId: s.rule_id,
      site: s.site,
      device: s.device,
      startsAt: iso(s.starts_at)!,
      endsAt: iso(s.ends_at)!,
      comment: s.comment,
      createdBy: s.created_by,
      active: s.starts_at <= now && s.ends_at > now,
    }));
  }

  async silence(
    m: { ruleId?: string | undefined; site?: string | undefined; device?: string | undefined; durationS: number; comment: string },
    who: Principal,
    now = Date.now(),
  ): Promise<Silence> {
    if (!m.ruleId && !m.site && !m.device)
      throw new EdgetwinError(
        ErrorCodes.BAD_REQUEST,
        'a silence needs at least one of ruleId, site, device (silencing everything is not a silence)',
      );
    const id = newId('s');
    await this.store.tx(async (tx) => {
      await tx.run(
        'INSERT INTO alert_silences (id, rule_id, site, device, starts_at, ends_at, comment, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
        [id, m.ruleId ?? null, m.site ?? null, m.device ?? null, now, now + m.durationS * 1000, m.comment, who.name, now],
      );
      await this.audit.record(tx, who, 'alert.silence', { device: m.device ?? null, site: m.site ?? null }, { silence: id, ...m }, now);
    });
    return (await this.silences(true, undefined, now)).find((s) => s.id === id)!;
  }

  /** Ends a silence now (audited). Answers the silence as it was, or undefined when unknown. */
  async unsilence(id: string, who: Principal, check: (s: SilenceRow) => void, now = Date.now()): Promise<boolean> {
    return this.store.tx(async (tx) => {
      const s = await tx.get<SilenceRow>('SELECT * FROM alert_silences WHERE id = ?', [id]);
      if (!s) return false;
      check(s);
      await tx.run('UPDATE alert_silences SET ends_at = ? WHERE id = ? AND ends_at > ?', [now, id, now]);
      await this.audit.record(tx, who, 'alert.unsilence', { device: s.device, site: s.site }, { silence: id }, now);
      return true;
    });
  }

  // ---- rules

  async rules(destinationIds: readonly string[]): Promise<Rule[]> {
    const rows = await this.store.all<{ spec: string; origin: Rule['origin'] }>('SELECT spec, origin FROM alert_rules ORDER BY id');
    return rows.map((r) => normalizeRule(JSON.parse(r.spec) as RuleSpec, r.origin, destinationIds));
  }

  /** Makes the config's rules the `config` rows (added, changed, removed); API rules are left alone. */
  async syncConfigRules(specs: readonly RuleSpec[], now = Date.now()): Promise<void> {
    await this.store.tx(async (tx) => {
      const have = new Map(
        (await tx.all<{ id: string; origin: string; spec: string }>('SELECT id, origin, spec FROM alert_rules')).map((r) => [r.id, r]),
      );
      for (const s of specs) {
        const row = have.get(s.id);
        const spec = JSON.stringify(s);
        if (!row) {
          await tx.run(
            "INSERT INTO alert_rules (id, origin, spec, created_at, created_by, updated_at) VALUES (?, 'config', ?, ?, 'config', ?)",
            [s.id, spec, now, now],
          );
        } else if (row.spec !== spec || row.origin !== 'config') {
          // The config file wins over an API rule of the same id: it is what the operator deploys.
          await tx.run("UPDATE alert_rules SET origin = 'config', spec = ?, version = version + 1, updated_at = ? WHERE id = ?", [
            spec,
            now,
            s.id,
          ]);
        }
      }
      const ids = new Set(specs.map((s) => s.id));
      for (const row of have.values())
        if (row.origin === 'config' && !ids.has(row.id)) await tx.run('DELETE FROM alert_rules WHERE id = ?', [row.id]);
    });
  }

  /** Creates (`replace` false) or replaces an API rule, audited; config rules are read-only here. */
  async putRule(spec: RuleSpec, replace: boolean, who: Principal, destinationIds: readonly string[], now = Date.now()): Promise<Rule> {
    const rule = normalizeRule(spec, 'api', destinationIds);
    await this.store.tx(async (tx) => {
      const row = await tx.get<{ origin: string }>(`SELECT origin FROM alert_rules WHERE id = ?${tx.dialect.forUpdate}`, [spec.id]);
      if (row?.origin === 'config')
        throw new EdgetwinError(ErrorCodes.CONFLICT, `alert rule ${spec.id} is defined in the config file; change it there`);
      if (row && !replace)
        throw new EdgetwinError(ErrorCodes.CONFLICT, `alert rule ${spec.id} exists; PUT /v1/alert-rules/${spec.id} replaces it`);
      if (!row && replace) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no alert rule ${spec.id}`);
      if (row)
        await tx.run('UPDATE alert_rules SET spec = ?, version = version + 1, updated_at = ? WHERE id = ?', [
          JSON.stringify(spec),
          now,
          spec.id,
        ]);
      else
        await tx.run("INSERT INTO alert_rules (id, origin, spec, created_at, created_by, updated_at) VALUES (?, 'api', ?, ?, ?, ?)", [
          spec.id,
          JSON.stringify(spec),
          now,
          who.name,
          now,
        ]);
      await this.audit.record(
        tx,
        who,
        replace ? 'alert_rule.update' : 'alert_rule.create',
        { site: spec.site ?? null },
        { rule: spec },
        now,
      );
    });
    return rule;
  }

  async deleteRule(id: string, who: Principal, check: (spec: RuleSpec) => void, now = Date.now()): Promise<void> {
    await this.store.tx(async (tx) => {
      const row = await tx.get<{ origin: string; spec: string }>(
        `SELECT origin, spec FROM alert_rules WHERE id = ?${tx.dialect.forUpdate}`,
        [id],
      );
      if (!row) throw new EdgetwinError(ErrorCodes.NOT_FOUND, `no alert rule ${id}`);
      if (row.origin === 'config')
        throw new EdgetwinError(ErrorCodes.CONFLICT, `alert rule ${id} is defined in the config file; remove it there`);
      const spec = JSON.parse(row.spec) as RuleSpec;
      check(spec);
      await tx.run('DELETE FROM alert_rules WHERE id = ?', [id]);
      await this.audit.record(tx, who, 'alert_rule.delete', { site: spec.site ?? null }, { rule: id }, now);
    });
  }
}
