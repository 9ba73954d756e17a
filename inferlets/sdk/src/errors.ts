/** Errors the server returns to an inferlet, as one class with the ABI's code. */
import type { ErrorCode } from 'pie:inferlet/types@0.2.0';

export type { ErrorCode };

/**
 * An expected failure reported by the server: an unknown model, a missing
 * snapshot, a limit reached, a busy context...
 *
 * @example
 * try {
 *   ctx = Context.open(model, 'system-prompt');
 * } catch (err) {
 *   if (err instanceof PieError && err.code === 'not-found') ctx = model.newContext();
 *   else throw err;
 * }
 */
export class PieError extends Error {
  override name = 'PieError';
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** Runs an ABI call, turning its `err` result into a PieError. */
export function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const payload = (err as { payload?: { code?: ErrorCode; message?: string } } | null)?.payload;
    if (payload && typeof payload.code === 'string') throw new PieError(payload.code, payload.message ?? payload.code);
    throw err;
  }
}
