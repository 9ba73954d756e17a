/**
 * A test inferlet for the session interface: it echoes each message it
 * receives as `echo:MESSAGE` until `end` (its result: how many it received)
 * or a receive times out (`timeout_ms`). With `gate`, it first waits for a
 * message on that messaging queue, so a test can fill its inbox unread.
 */
import { inferlet, queue, session } from '@pie/inferlet';

export const run = inferlet<{ timeout_ms?: number; gate?: string } | null>((args) => {
  if (args?.gate) queue(args.gate).pull();
  let received = 0;
  for (;;) {
    const m = session.receive(args?.timeout_ms === undefined ? {} : { timeout_ms: args.timeout_ms });
    if (m === undefined) return { received, timed_out: true };
    received++;
    if (m === 'end') return { received, timed_out: false };
    session.send(`echo:${m}`);
  }
});
