/** Does nothing: what an invocation costs before any inference. */
import { inferlet } from '@pie/inferlet';
export const run = inferlet(() => ({ ok: true }));
