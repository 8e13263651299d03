/**
 * Who may connect. The broker asks a DeviceAuthenticator for the device id behind a CONNECT;
 * every later ACL check keys on that id, never on what the client claims in a topic or payload.
 */
export interface DeviceAuthenticator {
  /** Resolves to the device id, or undefined to refuse the connection. */
  authenticate(clientId: string, username: string | undefined, password: Buffer | undefined): Promise<string | undefined> | string | undefined;
}

/**
 * Accepts any client and takes its client id as the device id: what the loopback demo and tests
 * use when no device registry is configured. Never expose an open broker beyond loopback.
 */
export class OpenAuthenticator implements DeviceAuthenticator {
  authenticate(clientId: string): string | undefined {
    return clientId.length > 0 ? clientId : undefined;
  }
}
