/** A conversation with the client while the inferlet runs (runs started over HTTP, `pie submit`, `pie run`). */
import * as abi from 'pie:inferlet/session@0.2.0';
import { call } from './errors.ts';

/**
 * Messages from the client (`POST /v1/runs/{id}/messages`, or lines typed
 * into `pie submit`) and back (events named `session.message`).
 *
 * @example
 * session.send('Your move?');
 * const move = session.receive({ timeout_ms: 60_000 }); // undefined on timeout
 */
export const session = {
  /** The next message, waiting up to `timeout_ms` (without one: until a message comes or the invocation ends); undefined on timeout. */
  receive: (options: { timeout_ms?: number } = {}): string | undefined => abi.receive(options.timeout_ms) ?? undefined,
  /** Sends a message to the client (objects as JSON). */
  send: (message: string | object): void => call(() => abi.send(typeof message === 'string' ? message : JSON.stringify(message))),
};
