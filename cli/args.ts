/**
 * Shared option handling of every `edgetwin` command: one table per command gives parseArgs its
 * options and the help its lines, so a help can never forget an option, its default or its unit.
 * Usage errors (unknown option, missing value, bad number) name the option and the help to run,
 * and end with exit code 2 (see edgetwin.ts).
 */
import { parseArgs } from 'node:util';
import { EdgetwinError, ErrorCodes } from '../common/errors.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder in the help: FILE, DIR, N (a number: give `unit`), TEXT… */
  value?: string;
  help: string;
  /** Shown as `(default: …)`; booleans default to off. */
  default?: string;
  /** Shown as `[unit]` after a number: ms, s, count, TCP port… */
  unit?: string;
  required?: boolean;
}

export type OptionTable = Record<string, OptionSpec>;

export const HELP_OPTION: OptionTable = { help: { type: 'boolean', short: 'h', help: 'show this help' } };

export function usage(msg: string): never {
  throw new EdgetwinError(ErrorCodes.USAGE, msg);
}

/** One aligned line per option: `--name VALUE  text [unit] (default: x | required)`. */
export function optionLines(table: OptionTable): string {
  const heads = Object.entries(table).map(([name, o]) => `  ${o.short ? `-${o.short}, ` : ''}--${name}${o.value ? ` ${o.value}` : ''}`);
  const width = Math.max(...heads.map((h) => h.length)) + 2;
  return Object.values(table)
    .map((o, i) => {
      const unit = o.unit ? ` [${o.unit}]` : '';
      const dflt = o.required ? '(required)' : `(default: ${o.default ?? (o.type === 'boolean' ? 'off' : 'none')})`;
      return `${heads[i]!.padEnd(width)}${o.help}${unit} ${dflt}`;
    })
    .join('\n');
}

/** A help text: usage line(s), a description, then the options. */
export function helpText(usageLines: string, table: OptionTable, body = '', footer = ''): string {
  return [usageLines, body, `Options:\n${optionLines(table)}`, footer].filter(Boolean).join('\n\n');
}

/**
 * parseArgs over the table, strict. `command` is the command line to name in errors
 * (`edgetwin cloud compact`); its `--help` is the way out every error points to.
 */
export type OptionValues = Record<string, string | boolean | undefined>;

/** A string option's value (undefined when absent). */
export function str(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function parseCommand(
  command: string,
  args: string[],
  table: OptionTable,
  opts: { positionals?: boolean } = {},
): { values: OptionValues; positionals: string[] } {
  const options = Object.fromEntries(
    Object.entries(table).map(([k, o]) => [k, o.short ? { type: o.type, short: o.short } : { type: o.type }]),
  );
  try {
    const r = parseArgs({ args, strict: true, allowPositionals: opts.positionals ?? false, options });
    return { values: r.values, positionals: r.positionals };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (!e.code?.startsWith('ERR_PARSE_ARGS_')) throw err;
    const opt = /'(-[^']*)'/.exec(e.message ?? '')?.[1];
    const what =
      e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
        ? `unknown option ${opt ?? ''}`
        : e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
          ? `unexpected argument ${/'([^']*)'/.exec(e.message ?? '')?.[1] ?? ''}`
          : (e.message ?? 'bad arguments').split('\n')[0]!;
    usage(`${command}: ${what.trim()}; run '${command} --help' for its options`);
  }
}

/** A whole number option within [min, max], or its default; the error names the option and the range. */
export function intOption(
  command: string,
  name: string,
  v: string | undefined,
  dflt: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max)
    usage(`${command}: --${name} must be a whole number from ${min} to ${max}, got "${v}"`);
  return n;
}

export interface Subcommand {
  usage: string;
  about: string;
  options: OptionTable;
  /** Positional arguments the subcommand takes (IDs), named in errors. */
  args?: string[];
  footer?: string;
  /** A group (`cloud tokens`): only prints its help, listing its subcommands. */
  group?: boolean;
}

export function subcommandHelp(sub: Subcommand): string {
  return helpText(sub.usage, sub.options, sub.about, sub.footer ?? '');
}

/**
 * Picks a subcommand by its leading words (`tokens create`, `add`, or '' for the bare group) and
 * parses the rest. Returns undefined when it printed a help instead.
 */
export function parseSubcommand(
  prefix: string,
  argv: string[],
  subs: Record<string, Subcommand>,
  out: (s: string) => void,
): { key: string; name: string; values: OptionValues; positionals: string[] } | undefined {
  const [w1, w2] = argv.map((a) => (a.startsWith('-') ? undefined : a));
  const key = [`${w1} ${w2}`, w1 ?? ''].find((k) => Object.hasOwn(subs, k));
  if (key === undefined) usage(`${prefix}: unknown subcommand "${w1}"; run '${prefix} --help'`);
  const sub = subs[key]!;
  const name = `${prefix}${key ? ` ${key}` : ''}`;
  const words = key ? key.split(' ').length : 0;
  if (sub.group && argv[words] !== undefined && !argv[words]!.startsWith('-'))
    usage(`${name}: unknown subcommand "${argv[words]}"; run '${name} --help'`);
  const { values, positionals } = parseCommand(name, argv.slice(words), sub.options, { positionals: true });
  if (values['help'] || sub.group) {
    out(subcommandHelp(sub));
    return undefined;
  }
  const want = sub.args ?? [];
  if (positionals.length < want.length) usage(`${name} needs ${want.join(' ')}; run '${name} --help'`);
  if (positionals.length > want.length) usage(`${name}: unexpected argument "${positionals[want.length]}"; run '${name} --help'`);
  return { key, name, values, positionals };
}
