/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/messaging@0.2.0' {
  /**
   * Appends a message to a queue; one puller receives it. Bounded per tenant
   * (a message's size, what the tenant's queues hold unread, how many queues,
   * how many messages a queue holds; an unread message expires):
   * `limit-exceeded` says which bound, and nothing was queued.
   */
  export function push(queue: string, message: string): void;
  /**
   * The next message of a queue, waiting up to `timeout-ms` (none: forever); none on timeout.
   */
  export function pull(queue: string, timeoutMs: number | undefined): string | undefined;
  /**
   * Sends a message to every current subscriber of a topic (a subscriber with
   * no room under the bounds misses it); `limit-exceeded` for a message too large.
   */
  export function broadcast(topic: string, message: string): void;
  export type Error = import('pie:inferlet/types@0.2.0').Error;
  
  export class Subscription implements Disposable {
    constructor(topic: string)
    /**
    * The next broadcast on the topic, waiting up to `timeout-ms`; none on timeout.
    */
    next(timeoutMs: number | undefined): string | undefined;
    [Symbol.dispose](): void;
  }
}
