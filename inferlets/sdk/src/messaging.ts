/** Messages between running inferlets of the same tenant. */
import * as abi from 'pie:inferlet/messaging@0.2.0';
import { call } from './errors.ts';

/**
 * A named queue: each message goes to exactly one puller, in order.
 *
 * @example
 * queue('jobs').push(JSON.stringify({ id: 1 }));
 * const job = queue('jobs').pull({ timeout_ms: 1000 }); // undefined on timeout
 */
export function queue(name: string) {
  return {
    /** Throws PieError `limit-exceeded` past the tenant's bounds (nothing is queued then). */
    push: (message: string) => call(() => abi.push(name, message)),
    pull: (options: { timeout_ms?: number } = {}): string | undefined => abi.pull(name, options.timeout_ms) ?? undefined,
  };
}

/**
 * A named topic: each broadcast reaches every subscriber at that moment.
 *
 * @example
 * const sub = topic('votes').subscribe();
 * topic('votes').broadcast('yes');
 * sub.next({ timeout_ms: 100 }); // 'yes'
 */
export function topic(name: string) {
  return {
    broadcast: (message: string) => call(() => abi.broadcast(name, message)),
    subscribe: () => {
      const raw = new abi.Subscription(name);
      return { next: (options: { timeout_ms?: number } = {}): string | undefined => raw.next(options.timeout_ms) ?? undefined };
    },
  };
}
