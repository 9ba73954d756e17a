import { describe, expect, it } from 'vitest';
import { PagePool } from './page-pool.ts';

describe('PagePool', () => {
  it('allocates from a FIFO free list and accounts free, cached and in-use pages exactly', () => {
    const pool = new PagePool(4, 16);
    expect(pool.allocate(2)).toEqual([0, 1]);
    expect([pool.numFree, pool.numCached, pool.numInUse]).toEqual([2, 0, 2]);
    pool.setKeyed(0, true);
    pool.release(0);
    expect([pool.numFree, pool.numCached, pool.numInUse]).toEqual([2, 1, 1]);
    // Released pages go to the tail: the never-used pages 2 and 3 come first.
    expect(pool.allocate(2)).toEqual([2, 3]);
  });

  it('recycles the least recently released cached page first and reports the eviction', () => {
    const pool = new PagePool(3, 4);
    const evicted: number[] = [];
    pool.onEvict = (p) => evicted.push(p);
    const pages = pool.allocate(3);
    for (const p of pages) pool.setKeyed(p, true);
    pool.release(2);
    pool.release(0);
    pool.release(1);
    expect(pool.numCached).toBe(3);
    expect(pool.allocate(1)).toEqual([2]);
    expect(evicted).toEqual([2]);
    expect([pool.numFree, pool.numCached, pool.numInUse]).toEqual([0, 2, 1]);
  });

  it('revives a cached page by retaining it, taking it off the free list', () => {
    const pool = new PagePool(3, 4);
    const [a] = pool.allocate(1) as [number];
    pool.setKeyed(a, true);
    pool.release(a);
    pool.retain(a);
    expect(pool.refCount(a)).toBe(1);
    expect(pool.numAvailable).toBe(2);
    expect(pool.allocate(2)).not.toContain(a);
  });

  it('refuses to allocate more pages than are available', () => {
    const pool = new PagePool(2, 4);
    expect(pool.canAllocate(3)).toBe(false);
    expect(() => pool.allocate(3)).toThrow(/3 pages requested, 2 available/);
  });

  it('detects a page released more often than retained', () => {
    const pool = new PagePool(2, 4);
    const [p] = pool.allocate(1) as [number];
    pool.release(p);
    expect(() => pool.release(p)).toThrow(/released more often/);
  });
});
