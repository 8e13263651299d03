/**
 * `edgetwin invoke DEVICE METHOD`: calls a direct method through the cloud's API
 * (`POST /v1/twins/{id}/methods/{method}`) and prints the device's answer as JSON. The exit code
 * says how it went, so scripts can branch on it: 0 when the device answered 2xx, 1 for any other
 * answer or error, 2 for a usage error.
 */
import { EdgetwinError, ErrorCodes, errorMessage } from '../common/errors.js';
import { METHOD_TIMEOUTS } from '../common/wire/c2d-protocol.js';
import { HELP_OPTION, helpText, intOption, parseCommand, str, usage, type OptionTable } from './args.js';

const OPTIONS: OptionTable = {
  payload: { type: 'string', value: 'JSON', help: "the method's payload (any JSON)", default: 'null' },
  'timeout-s': {
    type: 'string',
    value: 'N',
    help: 'how long the device has to answer (5-300)',
    unit: 's',
    default: String(METHOD_TIMEOUTS.responseDefaultS),
  },
  'connect-timeout-s': {
    type: 'string',
    value: 'N',
    help: 'how long to wait for the device to connect (0-300)',
    unit: 's',
    default: '0',
  },
  url: { type: 'string', value: 'URL', help: "the cloud's API", default: 'env EDGETWIN_CLOUD_URL, else http://127.0.0.1:8480' },
  token: { type: 'string', value: 'TOKEN', help: 'operator (or admin) bearer token', default: 'env EDGETWIN_TOKEN, else none' },
  ...HELP_OPTION,
};

export const INVOKE_HELP = helpText(
  'Usage: edgetwin invoke DEVICE METHOD [--payload JSON] [--timeout-s N] [options]',
  OPTIONS,
  `Calls a direct method on a device through the cloud, as IoT Hub's "invoke device method", and
prints {"status": …, "payload": …}: the device's own answer. The agent's built-in methods: ping,
flush, restartSource {"name"}, getDiagnostics, setLogLevel {"level"}.`,
  `Exit code: 0 when the device answered 2xx; 1 for another status, a device that is not online
(404), did not answer in time (504) or was cut off mid-call (502: the method may or may not have
run); 2 for a usage error.`,
);

export async function runInvoke(args: string[], print: (line: string) => void): Promise<number> {
  const cmd = 'edgetwin invoke';
  const { values, positionals } = parseCommand(cmd, args, OPTIONS, { positionals: true });
  if (values['help']) {
    print(INVOKE_HELP);
    return 0;
  }
  if (positionals.length !== 2) usage(`${cmd} needs DEVICE and METHOD; run '${cmd} --help'`);
  const [device, method] = positionals as [string, string];
  let payload: unknown = null;
  const raw = str(values, 'payload');
  if (raw !== undefined) {
    try {
      payload = JSON.parse(raw) as unknown;
    } catch {
      usage(`${cmd}: --payload must be JSON, e.g. '{"name":"simulator"}' or '"text"'`);
    }
  }
  const responseTimeoutS = intOption(cmd, 'timeout-s', str(values, 'timeout-s'), METHOD_TIMEOUTS.responseDefaultS, 5, 300);
  const connectTimeoutS = intOption(cmd, 'connect-timeout-s', str(values, 'connect-timeout-s'), 0, 0, 300);
  const base = (str(values, 'url') ?? process.env['EDGETWIN_CLOUD_URL'] ?? 'http://127.0.0.1:8480').replace(/\/$/, '');
  const token = str(values, 'token') ?? process.env['EDGETWIN_TOKEN'];
  const url = `${base}/v1/twins/${encodeURIComponent(device)}/methods/${encodeURIComponent(method)}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ payload, responseTimeoutS, connectTimeoutS }),
      // The cloud gives up after the device's timeouts; this only guards against a cloud that never answers.
      signal: AbortSignal.timeout((responseTimeoutS + connectTimeoutS + 15) * 1000),
    });
  } catch (err) {
    throw new EdgetwinError(ErrorCodes.UPLINK, `${cmd}: cloud at ${base} unreachable: ${errorMessage(err)}`, { cause: err });
  }
  const text = await res.text();
  let body: { status?: number; code?: string; message?: string } | undefined;
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    body = undefined;
  }
  if (res.status !== 200 || !body || typeof body.status !== 'number') {
    const code = body?.code ?? `HTTP ${res.status}`;
    print(JSON.stringify({ error: { httpStatus: res.status, code, message: body?.message ?? text.slice(0, 300) } }, null, 2));
    return 1;
  }
  print(JSON.stringify(body, null, 2));
  return body.status >= 200 && body.status < 300 ? 0 : 1;
}
