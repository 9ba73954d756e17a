/**
 * Per-invocation limits and the accounting behind them. Pages are counted as
 * the distinct pages the invocation's contexts hold (forks share theirs) plus
 * a worst-case reservation for the work it has running; tokens as generated
 * plus reserved. A call that would pass a limit fails with limit-exceeded
 * before anything is queued.
 */
import type { Context } from '../../engine/index.ts';
import { AbiError } from '../abi.ts';
import type { Invocation } from './invocation.ts';
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

/** Distinct KV pages held by the invocation's contexts. */
export function pagesHeld(inv: Invocation): number {
  const pages = new Set<number>();
  for (const { ctx } of inv.contexts.values()) for (const p of ctx.pageTable) pages.add(p);
  return pages.size;
}

/** Pages reserved for one running forward or generation: its worst case, less what it has allocated since. */
export interface PageReservation {
  ctx: Context;
  pages: number;
  /** The context's page count when the work started. */
  startPages: number;
}

/** Pages reserved for running work that it has not allocated yet. */
export function pagesReserved(inv: Invocation): number {
  let n = 0;
  for (const r of inv.reservations) n += Math.max(0, r.pages - Math.max(0, r.ctx.pageTable.length - r.startPages));
  return n;
}

/**
 * Most new pages computing `ctx` up to `newTokens` more tokens can take (a
 * shared partial page is copied), the last `recompute` computed tokens again.
 */
export function worstCasePages(ctx: Context, newTokens: number, pageSize: number, recompute = 0): number {
  return Math.max(0, Math.ceil((ctx.length + newTokens) / pageSize) - Math.floor(Math.max(0, ctx.numComputed - recompute) / pageSize));
}

/** Reserves pages for work on `ctx` that adds `newTokens`, or throws limit-exceeded. */
export function reservePages(inv: Invocation, ctx: Context, newTokens: number, pageSize: number, recompute = 0): PageReservation {
  const pages = worstCasePages(ctx, newTokens, pageSize, recompute);
  const held = pagesHeld(inv);
  const reserved = pagesReserved(inv);
  if (held + reserved + pages > inv.limits.kvPages) {
    throw new AbiError(
      'limit-exceeded',
      `this needs up to ${pages} more KV pages; the invocation holds ${held} and has ${reserved} reserved, its limit is ${inv.limits.kvPages}`,
    );
  }
  const r = { ctx, pages, startPages: ctx.pageTable.length };
  inv.reservations.add(r);
  return r;
}

/**
 * Most tokens a generation on `ctx` may produce within the page limit (the
 * limit caps a generation like max_tokens does); throws when even the prompt
 * does not fit.
 */
export function tokensWithinPages(inv: Invocation, ctx: Context, pageSize: number): number {
  const free = inv.limits.kvPages - pagesHeld(inv) - pagesReserved(inv);
  const room = (free + Math.floor(ctx.numComputed / pageSize)) * pageSize - ctx.length;
  if (room <= 0) {
    throw new AbiError('limit-exceeded', `the context's ${ctx.length} tokens need more KV pages than the invocation's limit of ${inv.limits.kvPages} leaves`);
  }
  return room;
}

/** Reserves up to `wanted` tokens (all that are left if undefined); throws when none are left. */
export function reserveTokens(inv: Invocation, wanted: number): number {
  const left = inv.limits.tokens - inv.numTokens - inv.reservedTokens;
  if (left <= 0) throw new AbiError('limit-exceeded', `the invocation has generated its limit of ${inv.limits.tokens} tokens`);
  const n = Math.min(wanted, left);
  inv.reservedTokens += n;
  return n;
}
