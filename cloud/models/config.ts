/** The cloud's `models` section: the model registry behind `/v1/models`. */

export interface CloudModelsConfig {
  /** Model files (`<dir>/<name>/<version>.onnx` + `.json`); empty: `<stateDir>/models`. */
  dir: string;
  /** Largest model accepted. Uploads are base64 in JSON, so `http.bodyLimitBytes` must be about 4/3 of this. */
  maxBytes: number;
  /** Ed25519 private key (PKCS#8 PEM, mode 600): when set, every uploaded manifest entry is signed — env EDGETWIN_MODEL_SIGNING_KEY_FILE. */
  signingKeyFile?: string;
  /** Load every upload with onnxruntime (shapes, a smoke run) and refuse one that does not work. */
  verifyOnUpload: boolean;
  /** Promotions are applied again this often (new devices, changed tags); 0: only when promoting or withdrawing. */
  reconcileIntervalMs: number;
}

export const cloudModelsDefaults: CloudModelsConfig = {
  dir: '',
  maxBytes: 48 * 1024 * 1024,
  verifyOnUpload: true,
  reconcileIntervalMs: 10_000,
};

export const cloudModelsConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dir: { type: 'string' },
    maxBytes: { type: 'integer', minimum: 1024 },
    signingKeyFile: { type: 'string', minLength: 1 },
    verifyOnUpload: { type: 'boolean' },
    reconcileIntervalMs: { type: 'integer', minimum: 0 },
  },
} as const;
