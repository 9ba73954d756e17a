/** What the caller receives: events while running, then a result. */
import * as abi from 'pie:inferlet/output@0.2.0';

/**
 * Sends an event to the caller now (an SSE event for HTTP callers). Objects are sent as JSON.
 *
 * @example
 * emit('progress', { step: 3, of: 10 });
 */
export function emit(event: string, data: string | object): void {
  abi.emit(event, typeof data === 'string' ? data : JSON.stringify(data));
}

/** Sets the invocation's result (objects as JSON). Returning a value from the entry point does the same. */
export function setResult(data: string | object): void {
  abi.setResult(typeof data === 'string' ? data : JSON.stringify(data));
}

/** For inferlets serving an HTTP route: the response status and headers. */
export function setStatus(status: number): void {
  abi.setStatus(status);
}

export function setHeader(name: string, value: string): void {
  abi.setHeader(name, value);
}

/** Whether the caller has gone away (the host also stops the invocation's waits). */
export function isCancelled(): boolean {
  return abi.isCancelled();
}
