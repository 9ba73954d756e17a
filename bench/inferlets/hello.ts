/** Emits one event, then ends: upload-to-first-event and launch latency over HTTP. */
import { emit, inferlet } from '@pie/inferlet';
export const run = inferlet(() => {
  emit('hello', 'world');
  return { ok: true };
});
