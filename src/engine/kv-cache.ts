/**
 * The KV cache as contexts see it: the page pool plus the prefix cache, and
 * the operations on a context's page table. Allocation is check-then-commit:
 * `plan` says what a step would take and costs nothing; `commit` takes it.
 *
 * Copy-on-write. A page may be shared (forks, snapshots, prefix hits) or keyed
 * (findable by content). Before a step writes into the middle of such a page,
 * the page is replaced by a private copy of its first rows; a keyed page that
 * nobody else holds just loses its key instead.
 */
import type { Context } from './context.ts';
import { PagePool } from './page-pool.ts';
import { PrefixCache, ROOT_KEY } from './prefix-cache.ts';

export interface PagePlan {
  ctx: Context;
  /** First position this step computes (after the prefix hits). */
  start: number;
  /** Positions this step will have computed: the page table must cover [0, upTo). */
  upTo: number;
  /** Cached pages that extend the computed prefix (appended to the page table on commit), and their keys. */
  hits: number[];
  hitKeys: number[];
  /** New pages to allocate. */
  numNew: number;
  /** Whether the page holding position numComputed must be copied first. */
  copyLast: boolean;
  /** Pages taken from the available list: what `canCommit` checks. */
  cost: number;
}

export interface SlotCopies {
  from: number[];
  to: number[];
}

export class KvCache {
  readonly pool: PagePool;
  readonly prefixCache: PrefixCache;
  readonly pageSize: number;

  constructor(numPages: number, pageSize: number, prefixCaching = true) {
    this.pool = new PagePool(numPages, pageSize);
    this.prefixCache = new PrefixCache(this.pool, prefixCaching);
    this.pageSize = pageSize;
  }

  /**
   * What it takes for `ctx` to compute up to `numTokens` more tokens. With
   * `usePrefix`, leading full pages of the pending tokens are served from the
   * prefix cache where possible — never the page holding the last token, so
   * that at least one token is computed and yields logits.
   */
  plan(ctx: Context, numTokens: number, usePrefix: boolean): PagePlan {
    const ps = this.pageSize;
    const hits: number[] = [];
    const hitKeys: number[] = [];
    let computed = ctx.numComputed;
    if (usePrefix && !ctx.customKv && this.prefixCache.enabled && computed % ps === 0 && ctx.pageTable.length === computed / ps) {
      const limit = Math.floor((ctx.length - 1) / ps) * ps;
      let parent = ctx.pageKeys.length > 0 ? ctx.pageKeys[ctx.pageKeys.length - 1]! : ROOT_KEY;
      while (computed + ps <= limit) {
        const key = this.prefixCache.key(parent, ctx.tokens, computed);
        const page = this.prefixCache.lookup(parent, key, ctx.tokens, computed);
        if (page < 0) break;
        hits.push(page);
        hitKeys.push(key);
        parent = key;
        computed += ps;
      }
    }
    const upTo = Math.min(ctx.length, computed + numTokens);
    const pagesNeeded = Math.ceil(upTo / ps);
    const numNew = Math.max(0, pagesNeeded - ctx.pageTable.length - hits.length);
    const copyLast = hits.length === 0 && this.needsCopy(ctx);
    const revived = hits.filter((p) => this.pool.refCount(p) === 0).length;
    return { ctx, start: computed, upTo, hits, hitKeys, numNew, copyLast, cost: numNew + revived + (copyLast ? 1 : 0) };
  }

  canCommit(plan: PagePlan): boolean {
    return this.pool.canAllocate(plan.cost);
  }

  commit(plan: PagePlan, copies: SlotCopies): void {
    const { ctx } = plan;
    const ps = this.pageSize;
    plan.hits.forEach((page, i) => {
      this.pool.retain(page);
      ctx.pageTable.push(page);
      ctx.pageKeys.push(plan.hitKeys[i]!);
      ctx.numComputed += ps;
    });
    const index = Math.floor(ctx.numComputed / ps);
    if (index < ctx.pageTable.length) {
      // The step writes into an existing page: make it private and unkeyed first.
      const old = ctx.pageTable[index]!;
      if (plan.copyLast && this.pool.refCount(old) > 1) {
        const [fresh] = this.pool.allocate(1) as [number];
        for (let i = 0; i < ctx.numComputed % ps; i++) {
          copies.from.push(old * ps + i);
          copies.to.push(fresh * ps + i);
        }
        ctx.pageTable[index] = fresh;
        this.pool.release(old);
      } else {
        this.prefixCache.forget(old);
      }
    }
    if (plan.numNew > 0) for (const p of this.pool.allocate(plan.numNew)) ctx.pageTable.push(p);
  }

  /** After a step: `ctx` has computed up to `upTo`; full pages become findable. */
  advance(ctx: Context, upTo: number): void {
    const ps = this.pageSize;
    ctx.numComputed = upTo;
    if (!this.prefixCache.enabled || ctx.customKv) return;
    for (let i = ctx.pageKeys.length; (i + 1) * ps <= upTo; i++) {
      const parent = i > 0 ? ctx.pageKeys[i - 1]! : ROOT_KEY;
      const key = this.prefixCache.key(parent, ctx.tokens, i * ps);
      this.prefixCache.insert(ctx.pageTable[i]!, parent, key, ctx.tokens, i * ps);
      ctx.pageKeys.push(key);
    }
  }

  /** Shares every page of `src` with `dst` (a fork or a snapshot). */
  share(src: Context, dst: Context): void {
    for (const p of src.pageTable) this.pool.retain(p);
    // Loops, not spreads: a long context would overflow the call stack.
    for (const t of src.tokens) dst.tokens.push(t);
    for (const p of src.pageTable) dst.pageTable.push(p);
    for (const k of src.pageKeys) dst.pageKeys.push(k);
    dst.numComputed = src.numComputed;
    // A busy source (a generation under way) has computed past what its holder knows: the copy starts from there.
    dst.settled = Math.max(src.settled, src.numComputed);
    dst.customKv = src.customKv;
    dst.ropePositions = src.ropePositions ? src.ropePositions.slice() : null;
  }

  /** Drops tokens from `length` on, and the pages no longer needed. */
  truncate(ctx: Context, length: number): void {
    const ps = this.pageSize;
    ctx.tokens.length = Math.min(ctx.tokens.length, length);
    if (ctx.ropePositions) ctx.ropePositions.length = ctx.tokens.length;
    ctx.numComputed = Math.min(ctx.numComputed, length);
    ctx.settled = Math.min(ctx.settled, length);
    const keep = Math.ceil(ctx.numComputed / ps);
    for (const p of ctx.pageTable.splice(keep)) this.pool.release(p);
    ctx.pageKeys.length = Math.min(ctx.pageKeys.length, Math.floor(ctx.numComputed / ps));
  }

  /** Whether dropping the context would free a page (one it alone holds). */
  wouldFree(ctx: Context): boolean {
    return ctx.pageTable.some((p) => this.pool.refCount(p) === 1);
  }

  /** Releases every page (the tokens stay: recompute after preemption). */
  drop(ctx: Context): void {
    this.pool.releaseAll(ctx.pageTable);
    ctx.pageTable.length = 0;
    ctx.pageKeys.length = 0;
    ctx.numComputed = 0;
  }

  /** Marks the last computed token as pending again, so a step recomputes it and yields its logits. */
  rewindOne(ctx: Context): void {
    if (ctx.numComputed === 0) return;
    ctx.numComputed--;
    ctx.pageKeys.length = Math.min(ctx.pageKeys.length, Math.floor(ctx.numComputed / this.pageSize));
  }

  /** Whether writing at ctx.numComputed needs a private copy of a shared page. */
  private needsCopy(ctx: Context): boolean {
    const page = ctx.pageTable[Math.floor(ctx.numComputed / this.pageSize)];
    return page !== undefined && this.pool.refCount(page) > 1;
  }
}
