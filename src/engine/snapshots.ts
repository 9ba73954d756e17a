/**
 * Named snapshots: frozen contexts that hold their pages beyond the life of
 * the request that made them, scoped to a tenant. Opening one forks it.
 *
 * They are a cache, not a store: under pressure (running work needs pages)
 * the least recently used one that frees pages is evicted, and a tenant's
 * snapshots together hold at most `maxPagesPerTenant` pages (saving past it
 * evicts the tenant's own least recently used first). Opening an evicted
 * snapshot says that it was evicted and why, so its owner knows to rebuild it.
 */
import type { Context } from './context.ts';
import * as errors from './errors.ts';
import type { KvCache } from './kv-cache.ts';

/** Names of evicted snapshots remembered for their owners' next open. */
const MAX_REMEMBERED = 4096;
/** Snapshots one tenant may keep, whatever their pages (an empty one holds none, but costs memory). */
export const MAX_SNAPSHOTS_PER_TENANT = 4096;

export class Snapshots {
  /** In order of last use (saved or opened), oldest first. */
  private readonly byKey = new Map<string, Context>();
  private readonly evicted = new Map<string, string>();
  private readonly kv: KvCache;
  private readonly makeContext: (tenant: string) => Context;
  readonly maxPagesPerTenant: number;

  constructor(kv: KvCache, makeContext: (tenant: string) => Context, maxPagesPerTenant = Infinity) {
    this.kv = kv;
    this.makeContext = makeContext;
    this.maxPagesPerTenant = maxPagesPerTenant;
  }

  get size(): number {
    return this.byKey.size;
  }

  /**
   * Saves (or replaces) `name` in the context's tenant with the context's
   * current tokens and pages. Past the tenant's page quota its least
   * recently used snapshots are evicted; one that alone passes it is refused.
   */
  save(ctx: Context, name: string): void {
    const snap = this.makeContext(ctx.tenant);
    this.kv.share(ctx, snap);
    const k = key(ctx.tenant, name);
    const own = new Set(snap.pageTable);
    if (own.size > this.maxPagesPerTenant) {
      this.kv.drop(snap);
      snap.released = true;
      throw new errors.EngineError('snapshot_quota_exceeded', `the snapshot would hold ${own.size} KV pages; a tenant's snapshots may hold at most ${this.maxPagesPerTenant}`);
    }
    this.delete(name, ctx.tenant);
    this.evicted.delete(k);
    let count = this.names(ctx.tenant).length;
    for (const [other, s] of this.byKey) {
      const overCount = count >= MAX_SNAPSHOTS_PER_TENANT;
      if (!overCount && this.pagesOf(ctx.tenant, snap) <= this.maxPagesPerTenant) break;
      if (s.tenant !== ctx.tenant) continue;
      this.evict(other, overCount ? `the tenant keeps at most ${MAX_SNAPSHOTS_PER_TENANT} snapshots` : `the tenant's snapshots passed their quota of ${this.maxPagesPerTenant} KV pages`);
      count--;
    }
    this.byKey.set(k, snap);
  }

  /** The snapshot, now its most recently used; undefined if there is none. */
  get(name: string, tenant: string): Context | undefined {
    const k = key(tenant, name);
    const snap = this.byKey.get(k);
    if (snap) {
      this.byKey.delete(k);
      this.byKey.set(k, snap);
    }
    return snap;
  }

  /** The snapshot without counting it as used (for bookkeeping that must not reorder the cache). */
  peek(name: string, tenant: string): Context | undefined {
    return this.byKey.get(key(tenant, name));
  }

  /** Why `name` is gone, when it was evicted (rather than deleted or never saved). */
  evictedBecause(name: string, tenant: string): string | undefined {
    return this.evicted.get(key(tenant, name));
  }

  delete(name: string, tenant: string): boolean {
    const k = key(tenant, name);
    this.evicted.delete(k);
    const snap = this.byKey.get(k);
    if (!snap) return false;
    this.drop(k, snap);
    return true;
  }

  /** Evicts the least recently used snapshot whose pages are its own alone (so that evicting it frees some); false when none would. */
  evictOldest(): boolean {
    for (const [k, snap] of this.byKey) {
      if (!this.kv.wouldFree(snap)) continue;
      this.evict(k, 'the KV cache needed its pages for running work');
      return true;
    }
    return false;
  }

  /** Every snapshot's context (for the engine's page bookkeeping). */
  contexts(): Context[] {
    return [...this.byKey.values()];
  }

  /** Evicts the snapshot whose context this is. */
  evictContext(snap: Context, why: string): void {
    for (const [k, s] of this.byKey) if (s === snap) return this.evict(k, why);
  }

  names(tenant: string): string[] {
    const prefix = `${tenant}\u0000`;
    return [...this.byKey.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }

  /** Distinct pages a tenant's snapshots hold, with `extra` (one being saved). */
  private pagesOf(tenant: string, extra: Context): number {
    const pages = new Set(extra.pageTable);
    for (const s of this.byKey.values()) if (s.tenant === tenant) for (const p of s.pageTable) pages.add(p);
    return pages.size;
  }

  private evict(k: string, why: string): void {
    const snap = this.byKey.get(k);
    if (!snap) return;
    this.drop(k, snap);
    this.evicted.set(k, why);
    if (this.evicted.size > MAX_REMEMBERED) this.evicted.delete(this.evicted.keys().next().value!);
  }

  private drop(k: string, snap: Context): void {
    this.byKey.delete(k);
    this.kv.drop(snap);
    snap.released = true;
  }
}

function key(tenant: string, name: string): string {
  return `${tenant}\u0000${name}`;
}
