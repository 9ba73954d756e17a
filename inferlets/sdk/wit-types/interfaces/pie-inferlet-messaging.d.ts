declare module 'pie:inferlet/messaging@0.1.0' {
  /**
   * Appends a message to a queue; one puller receives it.
   */
  export function push(queue: string, message: string): void;
  /**
   * The next message of a queue, waiting up to `timeout-ms` (none: forever); none on timeout.
   */
  export function pull(queue: string, timeoutMs: number | undefined): string | undefined;
  /**
   * Sends a message to every current subscriber of a topic.
   */
  export function broadcast(topic: string, message: string): void;
  
  export class Subscription implements Disposable {
    constructor(topic: string)
    /**
    * The next broadcast on the topic, waiting up to `timeout-ms`; none on timeout.
    */
    next(timeoutMs: number | undefined): string | undefined;
    [Symbol.dispose](): void;
  }
}
