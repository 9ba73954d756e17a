/** The invocation itself: input, identity, time, log. */
import * as abi from 'pie:inferlet/runtime@0.2.0';

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
