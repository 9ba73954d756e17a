/** pie:inferlet/runtime on the host: the log line, and children (launch, their events, end, cancel, detach). */
import { AbiError } from '../../abi.ts';
import type { WitChildEnd } from '../../ops.ts';
import { MAX_CHILD_EVENT_CHARS, MAX_CHILD_EVENTS, type HeldChild, type Invocation } from '../invocation.ts';
import { MAX_TIMER_MS } from '../limits.ts';
import type { Handlers, OpsIn } from './host-side.ts';

function heldChild(inv: Invocation, h: number): HeldChild {
  const held = inv.childHandles.get(h);
  if (!held) throw new AbiError('invalid-argument', `child ${h} does not exist`);
  return held;
}

/** Its next unread event: first how many were dropped, if any; null when none is waiting. */
function takeEvent(held: HeldChild): [string, string] | null {
  if (held.missed > 0) {
    const missed = held.missed;
    held.missed = 0;
    return ['child.gap', JSON.stringify({ missed })];
  }
  const e = held.events.shift();
  if (!e) return null;
  held.chars -= e.event.length + e.data.length;
  held.parent.unreadChildChars -= e.event.length + e.data.length;
  return [e.event, e.data];
}

export const runtimeHandlers: Handlers<OpsIn<'runtime'> | OpsIn<'child'>> = {
  'runtime.log': (inv, [level, message], host) => host.log(inv, level, message),
  'runtime.launch': async (inv, [h, component, input, limits], host) => {
    const child = await host.launch(inv, component, input, limits);
    const held: HeldChild = { inv: child, parent: inv, events: [], chars: 0, missed: 0, waiter: null };
    inv.childHandles.set(h, held);
    child.onEvent((e) => {
      if (inv.childHandles.get(h) !== held) return; // dropped, or its parent ended: nobody will read it
      held.events.push(e);
      held.chars += e.event.length + e.data.length;
      inv.unreadChildChars += e.event.length + e.data.length;
      // Unread past the bounds (this child's count, all the parent's children's characters): this child's oldest go, the
      // parent learns how many.
      while (held.events.length > MAX_CHILD_EVENTS || (inv.unreadChildChars > MAX_CHILD_EVENT_CHARS && held.events.length > 0)) {
        const old = held.events.shift()!;
        held.chars -= old.event.length + old.data.length;
        inv.unreadChildChars -= old.event.length + old.data.length;
        held.missed++;
      }
      held.waiter?.();
    });
    void child.result.finally(() => held.waiter?.()).catch(() => {});
    return child.instanceId;
  },
  'child.next-event': (inv, [h, timeoutMs]) => {
    const held = heldChild(inv, h);
    const now = takeEvent(held);
    if (now !== null || held.inv.done || timeoutMs === 0 || inv.done) return now;
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        inv.signal.removeEventListener('abort', done);
        held.waiter = null;
        resolve(takeEvent(held));
      };
      held.waiter = done;
      inv.signal.addEventListener('abort', done, { once: true });
      if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) timer = setTimeout(done, timeoutMs); // longer: no timeout
    });
  },
  'child.wait': async (inv, [h]): Promise<WitChildEnd> => {
    const child = heldChild(inv, h).inv;
    // A parent that ends first stops waiting (a detached child may run on long after).
    let stop = () => {};
    const parentEnded = new Promise<WitChildEnd>((resolve) => {
      stop = () => resolve({ tag: 'cancelled', val: 'the waiting invocation has ended' });
      inv.signal.addEventListener('abort', stop, { once: true });
    });
    const ended = child.result.then(
      (r): WitChildEnd => ({ tag: 'succeeded', val: r.data ?? undefined }),
      (err: unknown): WitChildEnd => {
        const message = err instanceof Error ? err.message : String(err);
        return child.state === 'cancelled' ? { tag: 'cancelled', val: message } : { tag: 'failed', val: message };
      },
    );
    try {
      return await Promise.race([ended, parentEnded]);
    } finally {
      inv.signal.removeEventListener('abort', stop);
    }
  },
  'child.cancel': (inv, [h]) => inv.childHandles.get(h)?.inv.cancel('cancelled by its parent'),
  'child.detach': (inv, [h], host) => host.detach(heldChild(inv, h).inv),
  'child.drop': (inv, [h]) => {
    const held = inv.childHandles.get(h);
    inv.childHandles.delete(h);
    if (!held) return;
    inv.unreadChildChars -= held.chars;
    held.events.length = 0;
    held.chars = 0;
    held.waiter?.();
  },
};
