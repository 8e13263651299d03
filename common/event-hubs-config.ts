/**
 * How an Event Hubs client finds its hub — the rules shared by the collector's sink and the
 * cloud's consumer, written once: a SAS connection string (`Endpoint=sb://…`, its EntityPath or
 * `eventHubName` naming the hub) or Entra ID (the namespace's fully qualified name plus
 * `eventHubName`), never both.
 */
import Type from 'typebox';
import type { EdgetwinError } from './errors.js';

export const eventHubsConnectionProperties = {
  /** `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=…]` — a secret: set it from the environment. */
  connectionString: Type.Optional(Type.String({ pattern: '^Endpoint=sb://' })),
  /** Entra ID instead of a connection string: e.g. `myns.servicebus.windows.net`, with DefaultAzureCredential. */
  fullyQualifiedNamespace: Type.Optional(Type.String({ minLength: 1 })),
  /** Required with fullyQualifiedNamespace; overrides the connection string's EntityPath otherwise. */
  eventHubName: Type.Optional(Type.String({ minLength: 1 })),
};

export interface EventHubsConnection {
  enabled: boolean;
  connectionString?: string | undefined;
  fullyQualifiedNamespace?: string | undefined;
  eventHubName?: string | undefined;
}

/** Rules that span keys (a schema cannot say them); `at` is the section's dotted key, `fail` builds the config error. */
export function checkEventHubsConnection(c: EventHubsConnection, at: string, fail: (key: string, msg: string) => EdgetwinError): void {
  if (!c.enabled) return;
  if (c.connectionString && c.fullyQualifiedNamespace)
    throw fail(`${at}.fullyQualifiedNamespace`, 'cannot be set together with connectionString');
  if (!c.connectionString && !c.fullyQualifiedNamespace)
    throw fail(
      `${at}.connectionString`,
      `or ${at}.fullyQualifiedNamespace is required when ${at}.enabled (SAS, or Entra ID with the namespace)`,
    );
  if (!c.eventHubName && !(c.connectionString && /;EntityPath=[^;]+/.test(c.connectionString)))
    throw fail(`${at}.eventHubName`, 'is required with fullyQualifiedNamespace, or when the connection string has no EntityPath');
}
