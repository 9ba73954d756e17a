/** pie:inferlet/messaging: queues and topics of the invocation's tenant, on the host. */
import type { GuestEnv } from './env.ts';

export function guestMessaging(env: GuestEnv) {
  class Subscription {
    readonly handle: number;
    constructor(topic: string) {
      this.handle = env.handle();
      env.send('messaging.subscribe', [this.handle, topic]);
    }
    async next(timeoutMs?: number) {
      return (await env.call('messaging.next', [this.handle, timeoutMs])) ?? undefined;
    }
    [Symbol.dispose]() {
      env.send('messaging.unsubscribe', [this.handle]);
    }
  }
  return {
    Subscription,
    push: async (queue: string, message: string) => {
      await env.call('messaging.push', [queue, message]);
    },
    pull: async (queue: string, timeoutMs?: number) => (await env.call('messaging.pull', [queue, timeoutMs])) ?? undefined,
    broadcast: async (topic: string, message: string) => {
      await env.call('messaging.broadcast', [topic, message]);
    },
  };
}
