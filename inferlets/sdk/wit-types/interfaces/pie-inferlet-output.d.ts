declare module 'pie:inferlet/output@0.2.0' {
  /**
   * Sends an event to the caller as it happens (an SSE event for HTTP callers).
   */
  export function emit(event: string, data: string): void;
  /**
   * The invocation's result (a JSON text or an HTTP body).
   */
  export function setResult(data: string): void;
  /**
   * For route-bound inferlets: the HTTP status (default 200), 200 to 599
   * (a 1xx would leave the client waiting; others trap).
   */
  export function setStatus(status: number): void;
  /**
   * A response header. The server frames the response itself: content-length,
   * transfer-encoding, connection and the other hop-by-hop headers trap.
   */
  export function setHeader(name: string, value: string): void;
  /**
   * Whether the caller has gone away.
   */
  export function isCancelled(): boolean;
}
