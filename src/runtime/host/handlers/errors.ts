/** Engine errors as the ABI's error codes. */
import { EngineError } from '../../../engine/index.ts';
import { AbiError, type ErrorCode } from '../../abi.ts';

const CODES: Record<string, ErrorCode> = {
  context_busy: 'busy',
  context_released: 'invalid-argument',
  context_length_exceeded: 'context-length-exceeded',
  invalid_token: 'invalid-argument',
  empty_context: 'invalid-argument',
  invalid_positions: 'invalid-argument',
  kv_cache_exhausted: 'kv-cache-exhausted',
  kv_cache_full: 'overloaded',
  snapshot_not_found: 'not-found',
  snapshot_quota_exceeded: 'limit-exceeded',
  engine_closed: 'cancelled',
};

/** An AbiError for an expected failure; anything else is returned unchanged (a trap). */
export function toAbiError(err: unknown): unknown {
  if (err instanceof EngineError) return new AbiError(CODES[err.code] ?? 'internal', err.message);
  return err;
}
