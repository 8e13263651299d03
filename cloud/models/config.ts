/** The cloud's `models` section: the model registry behind `/v1/models`. */
import Type, { type Static } from 'typebox';
import { Section } from '../../common/config.js';

export const cloudModelsConfigSchema = Section({
  /** Model files (`<dir>/<name>/<version>.onnx` + `.json`); empty: `<stateDir>/models`. */
  dir: Type.String({ default: '' }),
  /** Largest model accepted. Uploads are base64 in JSON, so `http.bodyLimitBytes` must be about 4/3 of this. */
  maxBytes: Type.Integer({ minimum: 1024, default: 48 * 1024 * 1024 }),
  /** Ed25519 private key (PKCS#8 PEM, mode 600): when set, every uploaded manifest entry is signed — env EDGETWIN_MODEL_SIGNING_KEY_FILE. */
  signingKeyFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Load every upload with onnxruntime (shapes, a smoke run) and refuse one that does not work. */
  verifyOnUpload: Type.Boolean({ default: true }),
  /** Promotions are applied again this often (new devices, changed tags); 0: only when promoting or withdrawing. */
  reconcileIntervalMs: Type.Integer({ minimum: 0, default: 10_000 }),
});
export type CloudModelsConfig = Static<typeof cloudModelsConfigSchema>;
