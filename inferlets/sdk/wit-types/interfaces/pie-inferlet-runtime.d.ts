/// <reference path="./pie-inferlet-types.d.ts" />
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
   * Starts a child invocation of a component: `self` (this inferlet's own
   * component) or, on a server, an inferlet this tenant uploaded (by id or
   * name). `input` is JSON text (at most 4 Mi characters). Its limits are
   * at most the tokens and wall time the parent has left and the parent's
   * KV page limit; its memory limit is the parent's. `not-found` for a component this
   * invocation cannot run, `invalid-argument` for input that is not JSON or
   * a limit of 0, `limit-exceeded` when the family or the tenant has no room
   * for another child, or nothing is left of the tokens or the wall time.
   */
  export function launch(component: string, input: string, limits: ChildLimits | undefined): Child;
  export type Error = import('pie:inferlet/types@0.2.0').Error;
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
  /**
   * Limits of a child, each at most what its parent has (none: the parent's).
   */
  export interface ChildLimits {
    tokens?: number,
    kvPages?: number,
    wallTimeMs?: number,
  }
  /**
   * An event a child emitted (its `output.emit`, or its session's `send`).
   */
  export interface ChildEvent {
    event: string,
    data: string,
  }
  /**
   * How a child ended.
   */
  export type ChildEnd = ChildEndSucceeded | ChildEndFailed | ChildEndCancelled;
  /**
   * It returned: the result it set, if any.
   */
  export interface ChildEndSucceeded {
    tag: 'succeeded',
    val: string | undefined,
  }
  /**
   * It failed, trapped or broke a limit: why.
   */
  export interface ChildEndFailed {
    tag: 'failed',
    val: string,
  }
  /**
   * It was cancelled (by its parent, or because its parent ended): why.
   */
  export interface ChildEndCancelled {
    tag: 'cancelled',
    val: string,
  }
  
  export class Child implements Disposable {
    /**
     * This type does not have a public constructor.
     */
    private constructor();
    /**
    * Its instance id.
    */
    id(): string;
    /**
    * Its next event, waiting up to `timeout-ms` (none: until one comes or it
    * ends); none on timeout, and once it has ended and every event was read.
    * At most 1024 events of a child, and 16 Mi characters of all the
    * parent's children's, wait unread: past that a child's oldest are
    * dropped and a `child.gap` event (data `{"missed": N}`) says how many.
    */
    nextEvent(timeoutMs: number | undefined): ChildEvent | undefined;
    /**
    * Waits for its end.
    */
    wait(): ChildEnd;
    /**
    * Cancels it (nothing if it has ended).
    */
    cancel(): void;
    /**
    * Lets it run on after this invocation ends, within its own limits (its
    * wall time still ends when its parent's would have). It leaves the
    * family with what it may still generate set aside out of the family's
    * tokens (at most what the family has left): what it generated and may
    * generate stays counted there, and its pages no longer do. A tenant may
    * have 16 detached children running: `limit-exceeded` past that. Its
    * events can still be read while the parent runs.
    */
    detach(): void;
    [Symbol.dispose](): void;
  }
}
