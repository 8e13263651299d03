// The twin page's direct-method form: calls POST /v1/twins/{id}/methods/{method} and shows the
// device's own answer, or why there is none (not online, no answer in time, cut off mid-call).
import { api, ApiError } from './api.js';
import { json } from './format.js';

const WHY = {
  EDGETWIN_ERR_DEVICE_NOT_ONLINE: 'The device is not connected (or not subscribed to methods).',
  EDGETWIN_ERR_METHOD_TIMEOUT: 'The device did not answer in time; the method may or may not have run.',
  EDGETWIN_ERR_GATEWAY: 'The connection to the device went away mid-call; the method may or may not have run.',
};

export function bindMethodForm(root, id, onDone) {
  const form = root.querySelector('#method-form');
  const status = root.querySelector('#method-status');
  const answer = root.querySelector('#method-answer');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let payload;
    try {
      payload = JSON.parse(form.elements.payload.value || 'null');
    } catch {
      status.className = 'error';
      status.textContent = 'The payload must be JSON (null, a number, "text", an object…).';
      return;
    }
    const method = form.elements.method.value.trim();
    const responseTimeoutS = Number(form.elements.timeout.value);
    status.className = '';
    status.textContent = `Calling ${method}…`;
    answer.hidden = true;
    const started = performance.now();
    try {
      const r = await api(`/v1/twins/${encodeURIComponent(id)}/methods/${encodeURIComponent(method)}`, {
        method: 'POST',
        body: { payload, responseTimeoutS },
      });
      const ms = Math.round(performance.now() - started);
      const ok = r.data.status >= 200 && r.data.status < 300;
      status.className = ok ? '' : 'error';
      status.textContent = `${method} answered ${r.data.status} in ${ms} ms.`;
      answer.dataset.status = String(r.data.status);
      answer.textContent = json(r.data.payload);
      answer.hidden = false;
    } catch (err) {
      status.className = 'error';
      if (err instanceof ApiError && err.status === 401) {
        status.textContent = 'Calling methods needs an operator token: use the Token button.';
        document.getElementById('token-button').click();
      } else if (err instanceof ApiError && err.status === 403) status.textContent = 'Your token may read but not call methods.';
      else status.textContent = `${WHY[err.code] ?? 'Failed.'} (${err.code ?? 'error'}: ${err.message})`;
    }
    onDone?.();
  });
}
