/** Waits on a queue until a message arrives: an idle instance. */
import { inferlet, queue } from '@pie/inferlet';
export const run = inferlet<{ queue: string }>((input) => ({ got: queue(input.queue).pull() ?? null }));
