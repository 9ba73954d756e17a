/** The invocation itself: input, identity, time, log. */
import * as abi from 'pie:inferlet/runtime@0.2.0';
import { call } from './errors.ts';

/** The invocation's input, parsed from JSON. */
export function input<T = unknown>(): T {
  return JSON.parse(abi.input()) as T;
}

export const instanceId = (): string => abi.instanceId();
export const tenant = (): string => abi.tenant();
/** Models this invocation may load. */
export const models = (): string[] => abi.models();
/** Monotonic milliseconds (fractional). */
export const now = (): number => Number(abi.now()) / 1e6;

/** A line in the server's log, tagged with this instance's id. */
export const log = Object.assign((message: string) => abi.log('info', message), {
  debug: (message: string) => abi.log('debug', message),
  info: (message: string) => abi.log('info', message),
  warn: (message: string) => abi.log('warn', message),
  error: (message: string) => abi.log('error', message),
});

/** Limits of a child, each at most its parent's (the family's tokens and pages together stay within the parent's). */
export interface ChildLimits {
  tokens?: number;
  kv_pages?: number;
  wall_time_s?: number;
}

/** How a child ended. */
export type ChildEnd = { status: 'succeeded'; result: string | undefined } | { status: 'failed' | 'cancelled'; error: string };

/**
 * An invocation this one launched: it runs beside this one, in the same
 * batches, and is cancelled when this one ends unless detached.
 *
 * @example
 * const kids = ['a', 'b'].map((topic) => launch('self', { topic }));
 * const answers = kids.map((k) => k.result<{ text: string }>());
 */
export class Child {
  /** @internal */
  readonly raw: abi.Child;
  /** @internal use launch() */
  constructor(raw: abi.Child) {
    this.raw = raw;
  }
  get id(): string {
    return this.raw.id();
  }
  /** Its next event, waiting up to `timeout_ms` (without one: until one comes or it ends); undefined on timeout or once it has ended and all were read. */
  nextEvent(options: { timeout_ms?: number } = {}): { event: string; data: string } | undefined {
    return this.raw.nextEvent(options.timeout_ms) ?? undefined;
  }
  /** Its events as they come, until it ends. */
  *events(): Generator<{ event: string; data: string }> {
    for (let e = this.nextEvent(); e !== undefined; e = this.nextEvent()) yield e;
  }
  /** Waits for its end. */
  wait(): ChildEnd {
    const end = this.raw.wait();
    return end.tag === 'succeeded' ? { status: 'succeeded', result: end.val ?? undefined } : { status: end.tag, error: end.val };
  }
  /** Waits for its end and parses its result as JSON; throws if it did not succeed. */
  result<T = unknown>(): T {
    const end = this.wait();
    if (end.status !== 'succeeded') throw new Error(`child ${this.id} ${end.status}: ${end.error}`);
    return (end.result === undefined ? undefined : JSON.parse(end.result)) as T;
  }
  cancel(): void {
    this.raw.cancel();
  }
  /** Lets it run on after this invocation ends (it leaves the family's limits; 16 per tenant). */
  detach(): void {
    call(() => this.raw.detach());
  }
}

/**
 * Launches a child invocation: `'self'` (this inferlet again, with another
 * input) or, on a server, an inferlet the tenant uploaded (by id or name).
 * Throws PieError `not-found`, `invalid-argument` or `limit-exceeded`.
 */
export function launch(component: string, input: unknown = null, limits: ChildLimits = {}): Child {
  const l: abi.ChildLimits = {};
  if (limits.tokens !== undefined) l.tokens = limits.tokens;
  if (limits.kv_pages !== undefined) l.kvPages = limits.kv_pages;
  if (limits.wall_time_s !== undefined) l.wallTimeMs = Math.round(limits.wall_time_s * 1000);
  return new Child(call(() => abi.launch(component, JSON.stringify(input), l)));
}
