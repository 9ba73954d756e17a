/** pie:inferlet/messaging over the host's MessageHub, scoped to the invocation's tenant. */
import { AbiError } from '../../abi.ts';
import { MessageLimitError } from '../message-hub.ts';
import type { Handlers, OpsIn } from './host-side.ts';

/** Subscriptions one invocation may hold at once. */
export const MAX_SUBSCRIPTIONS = 256;

/** A bound the hub refused the message for: limit-exceeded to the guest. */
function bounded(send: () => void): void {
  try {
    send();
  } catch (err) {
    if (err instanceof MessageLimitError) throw new AbiError('limit-exceeded', err.message);
    throw err;
  }
}

export const messagingHandlers: Handlers<OpsIn<'messaging'>> = {
  'messaging.push': (inv, [queue, message], host) => bounded(() => host.hub.push(inv.tenant, queue, message)),
  'messaging.pull': async (inv, [queue, timeoutMs], host) => {
    const message = await host.hub.pull(inv.tenant, queue, timeoutMs, inv.signal);
    // Ended while the message was on its way: it goes back to the queue, not nowhere.
    if (message !== null && inv.done) host.hub.putBack(inv.tenant, queue, message);
    return message;
  },
  'messaging.broadcast': (inv, [topic, message], host) => bounded(() => host.hub.broadcast(inv.tenant, topic, message)),
  'messaging.subscribe': (inv, [h, topic], host) => {
    // One-way: past the bound it fails the invocation as a limit.
    if (inv.subscriptions.size >= MAX_SUBSCRIPTIONS) throw new AbiError('limit-exceeded', `the invocation holds ${inv.subscriptions.size} subscriptions; the limit is ${MAX_SUBSCRIPTIONS}`);
    inv.subscriptions.set(h, { topic, box: host.hub.subscribe(inv.tenant, topic) });
  },
  'messaging.next': (inv, [h, timeoutMs]) => {
    const sub = inv.subscriptions.get(h);
    if (!sub) throw new AbiError('invalid-argument', `subscription ${h} does not exist`);
    return sub.box.take(timeoutMs, inv.signal);
  },
  'messaging.unsubscribe': (inv, [h], host) => {
    const sub = inv.subscriptions.get(h);
    if (!sub) return;
    inv.subscriptions.delete(h);
    host.hub.unsubscribe(inv.tenant, sub.topic, sub.box);
  },
};
