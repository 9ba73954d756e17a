/**
 * Messages between running inferlets, scoped to a tenant: queues (each
 * message goes to one puller, in order) and topics (each broadcast goes to
 * every subscriber at that moment). A waiting pull or subscription read ends
 * with its invocation, so no message is handed to a guest that is gone.
 *
 * Bounded per tenant, so that one tenant's guests cannot exhaust the process:
 * the size of a message, the bytes its queues and subscriptions hold unread,
 * the number of queues, the messages one queue holds, and how long an unread
 * message is kept. A push past a bound fails with a `MessageLimitError` (the
 * guest gets `limit-exceeded`) and changes nothing.
 */
interface Waiter {
  resolve: (message: string | null) => void;
  signal: AbortSignal;
}

export interface MessageLimits {
  /** Characters in one message. */
  maxMessageChars: number;
  /** Characters a tenant's queues and subscriptions hold unread, together. */
  maxCharsPerTenant: number;
  /** Queues a tenant may have holding messages or waiters. */
  maxQueuesPerTenant: number;
  /** Messages one queue or subscription holds unread. */
  maxQueued: number;
  /** An unread message older than this is dropped. */
  ttlMs: number;
}

export const DEFAULT_MESSAGE_LIMITS: MessageLimits = {
  maxMessageChars: 1 << 20,
  maxCharsPerTenant: 64 << 20,
  maxQueuesPerTenant: 1024,
  maxQueued: 10_000,
  ttlMs: 10 * 60 * 1000,
};

/** Longer waits are waits without a timeout (a Node.js timer cannot be longer). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export class MessageLimitError extends Error {
  override name = 'MessageLimitError';
}

/** What one tenant holds. */
interface Account {
  chars: number;
  queues: number;
}

export class Mailbox {
  readonly messages: Array<{ text: string; at: number }> = [];
  readonly waiters: Waiter[] = [];
  private readonly account: Account;
  private readonly limits: MessageLimits;

  constructor(account: Account, limits: MessageLimits) {
    this.account = account;
    this.limits = limits;
  }

  /** Whether a message of `chars` would fit (a waiting taker takes it at once). */
  room(chars: number): string | null {
    if (this.waiters.length > 0) return null;
    this.expire(performance.now());
    if (this.messages.length >= this.limits.maxQueued) return `the queue holds ${this.limits.maxQueued} unread messages`;
    if (this.account.chars + chars > this.limits.maxCharsPerTenant) {
      return `the tenant's queues hold ${this.account.chars} characters unread; the limit is ${this.limits.maxCharsPerTenant}`;
    }
    return null;
  }

  put(message: string): void {
    const w = this.waiters.shift();
    if (w) return w.resolve(message);
    const full = this.room(message.length);
    if (full) throw new MessageLimitError(full);
    this.add(message, false);
  }

  /** Gives back a message whose taker went away before receiving it: first in line again. */
  putBack(message: string): void {
    const w = this.waiters.shift();
    if (w) w.resolve(message);
    else this.add(message, true);
  }

  take(timeoutMs: number | undefined, signal: AbortSignal): Promise<string | null> | string | null {
    this.expire(performance.now());
    const first = this.messages.shift();
    if (first) {
      this.account.chars -= first.text.length;
      return first.text;
    }
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

  /** Drops messages older than the time to live. */
  expire(now: number): void {
    while (this.messages.length > 0 && now - this.messages[0]!.at > this.limits.ttlMs) this.account.chars -= this.messages.shift()!.text.length;
  }

  /** Drops everything it holds (a subscription that ended). */
  clear(): void {
    for (const m of this.messages.splice(0)) this.account.chars -= m.text.length;
  }

  get empty(): boolean {
    return this.messages.length === 0 && this.waiters.length === 0;
  }

  private add(text: string, first: boolean): void {
    const m = { text, at: performance.now() };
    if (first) this.messages.unshift(m);
    else this.messages.push(m);
    this.account.chars += text.length;
  }
}

export class MessageHub {
  readonly limits: MessageLimits;
  private readonly queues = new Map<string, Mailbox>();
  private readonly topics = new Map<string, Set<Mailbox>>();
  private readonly accounts = new Map<string, Account>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(limits: Partial<MessageLimits> = {}) {
    this.limits = { ...DEFAULT_MESSAGE_LIMITS, ...limits };
    // Expired messages of queues nobody reads again are dropped too.
    this.sweeper = setInterval(() => this.sweep(), Math.min(60_000, Math.max(1000, this.limits.ttlMs / 4)));
    this.sweeper.unref();
  }

  push(tenant: string, queue: string, message: string): void {
    this.checkSize(message);
    const key = `${tenant}\0${queue}`;
    const account = this.account(tenant);
    if (!this.queues.has(key) && account.queues >= this.limits.maxQueuesPerTenant) {
      throw new MessageLimitError(`the tenant has ${account.queues} queues holding messages or waiters; the limit is ${this.limits.maxQueuesPerTenant}`);
    }
    const box = this.mailbox(tenant, queue);
    try {
      box.put(message);
    } finally {
      this.dropIfEmpty(key, box);
    }
  }

  pull(tenant: string, queue: string, timeoutMs: number | undefined, signal: AbortSignal): Promise<string | null> | string | null {
    const key = `${tenant}\0${queue}`;
    const box = this.mailbox(tenant, queue);
    const got = box.take(timeoutMs, signal);
    if (got instanceof Promise) return got.finally(() => this.dropIfEmpty(key, box));
    this.dropIfEmpty(key, box);
    return got;
  }

  /** Gives back a pulled message whose invocation ended before it was delivered. */
  putBack(tenant: string, queue: string, message: string): void {
    this.mailbox(tenant, queue).putBack(message);
  }

  /** Every current subscriber gets it; a subscriber with no room (a full mailbox, the tenant's bytes) misses it. */
  broadcast(tenant: string, topic: string, message: string): void {
    this.checkSize(message);
    for (const box of this.topics.get(`${tenant}\0${topic}`) ?? []) if (box.room(message.length) === null) box.put(message);
  }

  /** A mailbox receiving the topic's broadcasts until `unsubscribe`. */
  subscribe(tenant: string, topic: string): Mailbox {
    const key = `${tenant}\0${topic}`;
    let subs = this.topics.get(key);
    if (!subs) this.topics.set(key, (subs = new Set()));
    const box = new Mailbox(this.account(tenant), this.limits);
    subs.add(box);
    return box;
  }

  unsubscribe(tenant: string, topic: string, box: Mailbox): void {
    const key = `${tenant}\0${topic}`;
    const subs = this.topics.get(key);
    box.clear();
    subs?.delete(box);
    if (subs?.size === 0) this.topics.delete(key);
  }

  /** What a tenant's queues hold (tests, metrics). */
  usage(tenant: string): { chars: number; queues: number } {
    const a = this.accounts.get(tenant);
    return { chars: a?.chars ?? 0, queues: a?.queues ?? 0 };
  }

  /** Pulls waiting across all queues (benchmarks, metrics). */
  get numWaiting(): number {
    let n = 0;
    for (const box of this.queues.values()) n += box.waiters.length;
    return n;
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private checkSize(message: string): void {
    if (message.length > this.limits.maxMessageChars) throw new MessageLimitError(`a message is at most ${this.limits.maxMessageChars} characters, got ${message.length}`);
  }

  private sweep(): void {
    const now = performance.now();
    for (const [key, box] of this.queues) {
      box.expire(now);
      this.dropIfEmpty(key, box);
    }
    for (const subs of this.topics.values()) for (const box of subs) box.expire(now);
  }

  private account(tenant: string): Account {
    let a = this.accounts.get(tenant);
    if (!a) this.accounts.set(tenant, (a = { chars: 0, queues: 0 }));
    return a;
  }

  private mailbox(tenant: string, queue: string): Mailbox {
    const key = `${tenant}\0${queue}`;
    let box = this.queues.get(key);
    if (!box) {
      const account = this.account(tenant);
      this.queues.set(key, (box = new Mailbox(account, this.limits)));
      account.queues++;
    }
    return box;
  }

  private dropIfEmpty(key: string, box: Mailbox): void {
    if (!box.empty || this.queues.get(key) !== box) return;
    this.queues.delete(key);
    const tenant = key.slice(0, key.indexOf('\0'));
    this.accounts.get(tenant)!.queues--; // accounts stay: subscriptions hold theirs, and tenants are few
  }
}
