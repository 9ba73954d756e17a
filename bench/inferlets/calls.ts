/** Makes n calls of one kind and returns how long they took inside the guest. */
import { inferlet, isCancelled, Model, now } from '@pie/inferlet';
export const run = inferlet<{ n: number; kind: 'local' | 'host' }>(({ n, kind }) => {
  const ctx = Model.load().newContext().fill([1, 2, 3]);
  const t0 = now();
  if (kind === 'local') for (let i = 0; i < n; i++) isCancelled();
  else for (let i = 0; i < n; i++) ctx.tokens(); // a call the host answers (ctx.length is known to the SDK: no call)
  return { ms: now() - t0 };
});
