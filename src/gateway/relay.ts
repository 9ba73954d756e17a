/**
 * Relays one invocation to one HTTP response. The first event the inferlet
 * emits commits a Server-Sent Events stream (status and headers as the
 * inferlet set them so far); an invocation that emits nothing answers with
 * its result as the body. A closed socket cancels the invocation.
 *
 *   event ─► (first) 200 text/event-stream ─► `data: …` per event
 *   result, no events ─► status + headers + body (JSON unless the inferlet said otherwise)
 *   failure, no events ─► OpenAI error JSON       failure mid-stream ─► a final `data: {"error": …}`
 */
import type { Response } from 'express';
import type { InvocationResult, OutputEvent } from '../runtime/host/invocation.ts';
import type { RunningInvocation } from '../runtime/host/port.ts';
import { InvocationError } from '../runtime/host/invocation.ts';
import { ApiError, InternalServerError, InvalidRequestError, ServiceUnavailableError } from './errors.ts';

/** Formats one SSE event: `message` events are bare `data:` lines (as OpenAI's chat streams), others name themselves. */
export function sseEvent(event: string, data: string): string {
  // Any of CR LF, LF or CR ends an SSE line: each becomes its own data line, so text cannot forge events.
  const lines = /[\r\n]/.test(data) ? data.split(/\r\n|\r|\n/).map((l) => `data: ${l}\n`).join('') : `data: ${data}\n`;
  return event === 'message' ? `${lines}\n` : `event: ${event}\n${lines}\n`;
}

export interface RelayOutcome {
  /** The invocation's result (null when it failed or was cancelled). */
  result: InvocationResult | null;
  error: ApiError | null;
  /** Whether the response went out as a stream. */
  streamed: boolean;
  /** The client went away before the end. */
  disconnected: boolean;
  /** HTTP status sent. */
  status: number;
}

/** Bytes a stream may have queued for a client that does not read before it is stopped. */
export const MAX_BUFFERED_BYTES = 8 << 20;

/**
 * Maps an invocation's failure to the error the client sees. A per-request
 * limit is the request's own doing (400, not worth retrying); a cancelled
 * invocation means the server is going away (503: retrying elsewhere is right).
 */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof InvocationError) {
    if (err.kind === 'limit') return new InvalidRequestError(err.message, null, 'limit_exceeded');
    if (err.kind === 'refused' || err.kind === 'cancelled') return new ServiceUnavailableError(err.message);
    return new InternalServerError(`the inferlet failed: ${err.message}`);
  }
  return new InternalServerError(err instanceof Error ? err.message : String(err));
}

/** The error an inferlet answered with (OpenAI's error JSON, or any body) as an ApiError. */
function errorOf(r: InvocationResult): ApiError {
  try {
    const e = (JSON.parse(r.data ?? '') as { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } }).error;
    if (e && typeof e.message === 'string') {
      const type = typeof e.type === 'string' ? e.type : r.status >= 500 ? 'server_error' : 'invalid_request_error';
      return new ApiError(r.status, type, e.message, { param: typeof e.param === 'string' ? e.param : null, code: typeof e.code === 'string' ? e.code : null });
    }
  } catch {
    // not JSON: its text is the message
  }
  return new ApiError(r.status, r.status >= 500 ? 'server_error' : 'invalid_request_error', r.data || `the inferlet answered ${r.status} after its stream began`);
}

export interface RelayOptions {
  /** Called with each event before it is written (metrics, stores). */
  onEvent?: (e: OutputEvent) => void;
  /** Called once the result is in, before the body is written; may replace the body. */
  onResult?: (r: InvocationResult, streamed: boolean) => string | null | void;
  /** Events held back until `onResult` has run (e.g. a final event announcing what it stores). */
  holdUntilResult?: (e: OutputEvent) => boolean;
  /** The SSE text that ends a stream which failed midway, given how many events went out (default: `data: {"error": …}`). */
  streamError?: (e: ApiError, numEvents: number) => string;
}

export async function relay(res: Response, inv: RunningInvocation, options: RelayOptions = {}): Promise<RelayOutcome> {
  let streamed = false;
  let disconnected = false;
  const onClose = () => {
    if (res.writableFinished) return;
    disconnected = true;
    inv.cancel('the client disconnected');
  };
  res.on('close', onClose);
  const held: OutputEvent[] = [];
  let numEvents = 0;
  let queued: string[] = [];
  const writeQueued = () => {
    if (queued.length === 0 || disconnected || res.writableEnded) return void (queued = []);
    res.write(queued.length === 1 ? queued[0]! : queued.join(''));
    queued = [];
    if (res.writableLength > MAX_BUFFERED_BYTES) inv.cancel(`the client did not read its stream (${MAX_BUFFERED_BYTES >> 20} MiB queued)`);
  };
  const startStream = () => {
    streamed = true;
    res.status(inv.status);
    for (const [k, v] of Object.entries(inv.headers)) res.setHeader(k, v);
    res.setHeader('content-type', 'text/event-stream; charset=utf-8');
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('x-accel-buffering', 'no');
    res.flushHeaders();
  };
  /** Ends a stream that failed midway: what was queued, then the error. */
  const endStreamWith = (error: ApiError) => {
    writeQueued();
    res.end(options.streamError ? options.streamError(error, numEvents) : sseEvent('message', JSON.stringify(error.toJSON())));
  };
  inv.onEvent((e) => {
    options.onEvent?.(e);
    if (disconnected) return;
    if (options.holdUntilResult?.(e)) {
      held.push(e);
      return;
    }
    if (!streamed) startStream();
    numEvents++;
    // Written after the current engine step has handed its next batch to the driver, not inside the step.
    if (queued.length === 0) setImmediate(writeQueued);
    queued.push(sseEvent(e.event, e.data));
  });
  try {
    const r = await inv.result;
    const replaced = options.onResult?.(r, streamed);
    if (disconnected) return { result: r, error: null, streamed, disconnected, status: r.status };
    if (!streamed && held.length > 0) startStream();
    if (streamed && r.status >= 400) {
      // An error status set after the stream began cannot be sent: the stream ends with it as its error instead of just stopping.
      const error = errorOf(r);
      endStreamWith(error);
      return { result: null, error, streamed, disconnected, status: res.statusCode };
    }
    if (streamed) {
      writeQueued();
      res.end(held.map((e) => sseEvent(e.event, e.data)).join(''));
      return { result: r, error: null, streamed, disconnected, status: res.statusCode };
    }
    const body = replaced ?? r.data ?? '';
    res.status(r.status);
    for (const [k, v] of Object.entries(r.headers)) res.setHeader(k, v);
    if (!res.getHeader('content-type')) res.setHeader('content-type', 'application/json');
    res.end(body);
    return { result: r, error: null, streamed, disconnected, status: r.status };
  } catch (err) {
    const error = toApiError(err);
    if (disconnected) return { result: null, error, streamed, disconnected, status: 499 };
    if (streamed) {
      endStreamWith(error);
      return { result: null, error, streamed, disconnected, status: res.statusCode };
    }
    throw error;
  } finally {
    res.off('close', onClose);
  }
}
