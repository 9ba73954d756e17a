declare module 'pie:inferlet/runtime@0.2.0' {
  /**
   * The invocation's input (JSON text; "null" when there is none).
   */
  export function input(): string;
  /**
   * A unique id of this invocation.
   */
  export function instanceId(): string;
  /**
   * The tenant the invocation runs for (snapshots and messages are scoped to it).
   */
  export function tenant(): string;
  /**
   * Names of the models this invocation may load.
   */
  export function models(): Array<string>;
  /**
   * Monotonic time in nanoseconds.
   */
  export function now(): bigint;
  /**
   * A line in the server's log, tagged with the instance id.
   */
  export function log(level: LogLevel, message: string): void;
  /**
   * # Variants
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
}
