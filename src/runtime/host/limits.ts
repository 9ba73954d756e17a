/**
 * Per-invocation limits: their defaults, and the worst case in pages of a
 * piece of work (the accounting against them is the Invocation's).
 */
import type { Context } from '../../engine/index.ts';
import type { InstanceLimits } from '../protocol.ts';

/** The longest delay a Node.js timer takes (a longer one fires at once). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const DEFAULT_LIMITS: InstanceLimits = {
  memoryBytes: 256 * 1024 * 1024,
  kvPages: Number.MAX_SAFE_INTEGER, // the host narrows this to its pool size
  tokens: 1_000_000,
  wallTimeMs: 10 * 60 * 1000,
};

export function resolveLimits(base: InstanceLimits, override: Partial<InstanceLimits> = {}): InstanceLimits {
  const out = { ...base };
  for (const key of Object.keys(base) as (keyof InstanceLimits)[]) {
    const v = override[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !(v > 0)) throw new RangeError(`limit ${key} must be a positive number, got ${String(v)}`);
    out[key] = key === 'wallTimeMs' ? Math.min(v, MAX_TIMER_MS) : v;
  }
  return out;
}

/**
 * Most new pages computing `ctx` up to `newTokens` more tokens can take (a
 * shared partial page is copied), the last `recompute` computed tokens again.
 */
export function worstCasePages(ctx: Context, newTokens: number, pageSize: number, recompute = 0): number {
  return Math.max(0, Math.ceil((ctx.length + newTokens) / pageSize) - Math.floor(Math.max(0, ctx.numComputed - recompute) / pageSize));
}
