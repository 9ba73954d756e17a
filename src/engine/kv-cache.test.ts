import { describe, expect, it } from 'vitest';
import { Context } from './context.ts';
import { KvCache } from './kv-cache.ts';

function ctxWith(tokens: number[], id = 1): Context {
  const c = new Context(id, 'default');
  c.tokens.push(...tokens);
  return c;
}

function run(kv: KvCache, ctx: Context, budget = 1000) {
  const copies = { from: [] as number[], to: [] as number[] };
  const plan = kv.plan(ctx, budget, true);
  expect(kv.canCommit(plan)).toBe(true);
  kv.commit(plan, copies);
  kv.advance(ctx, plan.upTo);
  return { plan, copies };
}

describe('KvCache and the prefix cache', () => {
  it('reuses the full pages of a known prefix, verified, and counts hits and misses', () => {
    const kv = new KvCache(16, 4);
    const a = ctxWith([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    run(kv, a);
    expect(kv.prefixCache.numEntries).toBe(2);
    const b = ctxWith([1, 2, 3, 4, 5, 6, 7, 8, 99, 100], 2);
    const { plan } = run(kv, b);
    expect(plan.hits).toEqual(a.pageTable.slice(0, 2));
    expect(plan.start).toBe(8);
    expect(kv.prefixCache.numHits).toBe(2);
    expect(b.pageTable.slice(0, 2)).toEqual(a.pageTable.slice(0, 2));
    expect(kv.pool.refCount(a.pageTable[0]!)).toBe(2);
  });

  it('never serves the page holding the last prompt token from the cache', () => {
    const kv = new KvCache(16, 4);
    const a = ctxWith([1, 2, 3, 4, 5, 6, 7, 8]);
    run(kv, a);
    const b = ctxWith([1, 2, 3, 4, 5, 6, 7, 8], 2);
    const { plan } = run(kv, b);
    expect(plan.hits).toHaveLength(1);
    expect(plan.start).toBe(4);
  });

  it('keys a page by its whole prefix, not only its own tokens', () => {
    const kv = new KvCache(16, 4);
    run(kv, ctxWith([1, 2, 3, 4, 5, 6, 7, 8, 0]));
    const b = ctxWith([9, 9, 9, 9, 5, 6, 7, 8, 0], 2);
    const { plan } = run(kv, b);
    expect(plan.hits).toEqual([]);
  });

  it('keeps released pages findable until the pool recycles them', () => {
    const kv = new KvCache(4, 4);
    const a = ctxWith([1, 2, 3, 4, 5]);
    run(kv, a);
    kv.drop(a);
    expect(kv.pool.numCached).toBe(1);
    const b = ctxWith([1, 2, 3, 4, 7], 2);
    expect(run(kv, b).plan.hits).toHaveLength(1);
    kv.drop(b);
    // Fill the pool with other content: the cached page is evicted.
    const c = ctxWith(Array.from({ length: 16 }, (_, i) => 100 + i), 3);
    run(kv, c);
    expect(kv.prefixCache.numEntries).toBeLessThanOrEqual(4);
    kv.drop(c);
    const d = ctxWith([1, 2, 3, 4, 7], 4);
    expect(run(kv, d).plan.hits).toHaveLength(0);
    kv.drop(d);
    expect(kv.pool.numInUse).toBe(0);
  });

  it('copies a shared partial page before writing into it (copy-on-write)', () => {
    const kv = new KvCache(8, 4);
    const a = ctxWith([1, 2, 3, 4, 5, 6]);
    run(kv, a);
    const b = new Context(2, 'default');
    kv.share(a, b);
    b.tokens.push(7);
    const { copies } = run(kv, b);
    expect(b.pageTable[0]).toBe(a.pageTable[0]);
    expect(b.pageTable[1]).not.toBe(a.pageTable[1]);
    const ps = 4;
    expect(copies.from).toEqual([a.pageTable[1]! * ps, a.pageTable[1]! * ps + 1]);
    expect(copies.to).toEqual([b.pageTable[1]! * ps, b.pageTable[1]! * ps + 1]);
    // The original now holds its page alone and writes in place.
    a.tokens.push(8);
    expect(run(kv, a).copies.from).toEqual([]);
    kv.drop(a);
    kv.drop(b);
    expect(kv.pool.numInUse).toBe(0);
  });

  it('drops the key of a lone cached page that a truncated context rewrites', () => {
    const kv = new KvCache(8, 4);
    const a = ctxWith([1, 2, 3, 4, 5]);
    run(kv, a);
    expect(kv.prefixCache.isKeyed(a.pageTable[0]!)).toBe(true);
    kv.truncate(a, 2);
    a.tokens.push(42, 43);
    run(kv, a);
    // The page now holds [1, 2, 42, 43] and is findable by that content only.
    const b = ctxWith([1, 2, 3, 4, 5], 2);
    expect(run(kv, b).plan.hits).toEqual([]);
    const c = ctxWith([1, 2, 42, 43, 5], 3);
    expect(run(kv, c).plan.hits).toEqual([a.pageTable[0]]);
    for (const x of [a, b, c]) kv.drop(x);
    expect(kv.pool.numInUse).toBe(0);
  });

  it('plans without side effects: an uncommitted plan costs nothing', () => {
    const kv = new KvCache(2, 4);
    const a = ctxWith(Array.from({ length: 12 }, (_, i) => i));
    const plan = kv.plan(a, 100, true);
    expect(kv.canCommit(plan)).toBe(false);
    expect(kv.pool.numInUse).toBe(0);
    expect(a.pageTable).toEqual([]);
  });
});
