/**
 * Named snapshots: frozen contexts that pin their pages beyond the life of the
 * request that made them, scoped to a tenant. Opening one forks it.
 */
import type { Context } from './context.ts';
import type { KvCache } from './kv-cache.ts';

export class Snapshots {
  private readonly byKey = new Map<string, Context>();
  private readonly kv: KvCache;
  private readonly makeContext: (tenant: string) => Context;

  constructor(kv: KvCache, makeContext: (tenant: string) => Context) {
    this.kv = kv;
    this.makeContext = makeContext;
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Saves (or replaces) `name` in the context's tenant with the context's current tokens and pages. */
  save(ctx: Context, name: string): void {
    const snap = this.makeContext(ctx.tenant);
    this.kv.share(ctx, snap);
    this.delete(name, ctx.tenant);
    this.byKey.set(key(ctx.tenant, name), snap);
  }

  get(name: string, tenant: string): Context | undefined {
    return this.byKey.get(key(tenant, name));
  }

  delete(name: string, tenant: string): boolean {
    const snap = this.byKey.get(key(tenant, name));
    if (!snap) return false;
    this.byKey.delete(key(tenant, name));
    this.kv.drop(snap);
    snap.released = true;
    return true;
  }

  names(tenant: string): string[] {
    const prefix = `${tenant}\u0000`;
    return [...this.byKey.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }
}

function key(tenant: string, name: string): string {
  return `${tenant}\u0000${name}`;
}
