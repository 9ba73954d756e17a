/**
 * Messages between running inferlets, scoped to a tenant: queues (each
 * message goes to one puller, in order) and topics (each broadcast goes to
 * every subscriber at that moment). A waiting pull or subscription read ends
 * with its invocation, so no message is handed to a guest that is gone.
 */
interface Waiter {
  resolve: (message: string | null) => void;
  signal: AbortSignal;
}

/** Messages a queue or subscription holds unread before a push to it fails. */
export const MAX_QUEUED = 10_000;
/** Longer waits are waits without a timeout (a Node.js timer cannot be longer). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

class Mailbox {
  readonly messages: string[] = [];
  readonly waiters: Waiter[] = [];

  put(message: string): void {
    const w = this.waiters.shift();
    if (w) w.resolve(message);
    else if (this.messages.length >= MAX_QUEUED) throw new QueueFullError(`the queue holds ${MAX_QUEUED} unread messages`);
    else this.messages.push(message);
  }

  /** Gives back a message whose taker went away before receiving it: first in line again. */
  putBack(message: string): void {
    const w = this.waiters.shift();
    if (w) w.resolve(message);
    else this.messages.unshift(message);
  }

  take(timeoutMs: number | undefined, signal: AbortSignal): Promise<string | null> | string | null {
    if (this.messages.length > 0) return this.messages.shift()!;
    if (timeoutMs === 0 || signal.aborted) return null;
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (m: string | null) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(m);
      };
      const onAbort = () => done(null);
      const waiter: Waiter = { resolve: done, signal };
      this.waiters.push(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined && timeoutMs <= MAX_TIMEOUT_MS) timer = setTimeout(() => done(null), timeoutMs);
    });
  }
}

export class MessageHub {
  private readonly queues = new Map<string, Mailbox>();
  private readonly topics = new Map<string, Set<Mailbox>>();

  push(tenant: string, queue: string, message: string): void {
    this.mailbox(tenant, queue).put(message);
  }

  pull(tenant: string, queue: string, timeoutMs: number | undefined, signal: AbortSignal): Promise<string | null> | string | null {
    const key = `${tenant}\0${queue}`;
    const box = this.mailbox(tenant, queue);
    const got = box.take(timeoutMs, signal);
    const drop = () => {
      if (box.messages.length === 0 && box.waiters.length === 0 && this.queues.get(key) === box) this.queues.delete(key);
    };
    if (got instanceof Promise) return got.finally(drop);
    drop();
    return got;
  }

  /** Gives back a pulled message whose invocation ended before it was delivered. */
  putBack(tenant: string, queue: string, message: string): void {
    this.mailbox(tenant, queue).putBack(message);
  }

  /** Every current subscriber gets it; a subscriber with a full mailbox misses it. */
  broadcast(tenant: string, topic: string, message: string): void {
    for (const box of this.topics.get(`${tenant}\0${topic}`) ?? []) {
      if (box.waiters.length > 0 || box.messages.length < MAX_QUEUED) box.put(message);
    }
  }

  /** A mailbox receiving the topic's broadcasts until `unsubscribe`. */
  subscribe(tenant: string, topic: string): Mailbox {
    const key = `${tenant}\0${topic}`;
    let subs = this.topics.get(key);
    if (!subs) this.topics.set(key, (subs = new Set()));
    const box = new Mailbox();
    subs.add(box);
    return box;
  }

  unsubscribe(tenant: string, topic: string, box: Mailbox): void {
    const key = `${tenant}\0${topic}`;
    const subs = this.topics.get(key);
    subs?.delete(box);
    if (subs?.size === 0) this.topics.delete(key);
  }

  /** Pulls waiting across all queues (benchmarks, metrics). */
  get numWaiting(): number {
    let n = 0;
    for (const box of this.queues.values()) n += box.waiters.length;
    return n;
  }

  private mailbox(tenant: string, queue: string): Mailbox {
    const key = `${tenant}\0${queue}`;
    let box = this.queues.get(key);
    if (!box) this.queues.set(key, (box = new Mailbox()));
    return box;
  }
}

export type { Mailbox };
