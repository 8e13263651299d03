/** The cloud's `c2d` config section (cloud/c2d/): its own file, so cloud/config.ts imports no service code. */
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';

export const cloudC2dConfigSchema = Section(
  {
    maxMessagesPerDevice: Type.Integer({
      minimum: 1,
      maximum: 10_000,
      default: 50,
      description: 'Device-bound messages not yet finished per device (IoT Hub: 50); more answer 429 EDGETWIN_ERR_DEVICE_QUEUE_FULL.',
    }),
    maxPendingMethodsPerSite: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 1000,
      description: 'Method calls in flight per site; more answer 429 EDGETWIN_ERR_RATE_LIMITED.',
    }),
    pingIntervalMs: Type.Integer({
      minimum: 100,
      maximum: 600_000,
      default: 15_000,
      description: 'The cloud pings each channel (and re-checks its token) this often; no pong for an interval closes it.',
    }),
    sweepIntervalMs: Type.Integer({
      minimum: 50,
      maximum: 600_000,
      default: 1000,
      description: 'Pending messages past their expiry are marked expired this often; pending messages are re-sent to channels then too.',
    }),
  },
  { description: 'Cloud to device: direct methods, device-bound messages, collector channels (cloud/c2d/).' },
);
export type CloudC2dConfig = Static<typeof cloudC2dConfigSchema>;
