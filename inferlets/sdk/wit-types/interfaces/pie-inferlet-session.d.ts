/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/session@0.2.0' {
  /**
   * The next message from the client, waiting up to `timeout-ms` (none: until
   * one arrives or the invocation ends); none on timeout. Messages wait in a
   * bounded queue of the invocation (a client past its bound is refused, not
   * dropped).
   */
  export function receive(timeoutMs: number | undefined): string | undefined;
  /**
   * Sends a message to the client: an event named `session.message` whose
   * data is the message. `invalid-argument` for one over 16 Mi characters.
   */
  export function send(message: string): void;
  export type Error = import('pie:inferlet/types@0.2.0').Error;
}
