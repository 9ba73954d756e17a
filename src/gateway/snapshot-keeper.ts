/**
 * Conversation snapshots kept for previous_response_id follow-ups. Each pins
 * KV pages, so they are evicted oldest first: beyond `max`, and whenever the
 * engine's free pages fall below a quarter of its pool. An evicted one costs
 * only a re-prefill: the stored tokens rebuild the same state.
 */
import type { Engine } from '../engine/index.ts';

interface Kept {
  engine: Engine;
  tenant: string;
  name: string;
}

export class SnapshotKeeper {
  private readonly max: number;
  /** Insertion order is age order (a Map keeps it). */
  private readonly kept = new Map<string, Kept>();

  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.kept.size;
  }

  /** Records a snapshot just saved, then evicts what no longer fits. */
  add(engine: Engine, tenant: string, name: string): void {
    const key = `${tenant}\u0000${name}`;
    this.kept.delete(key);
    this.kept.set(key, { engine, tenant, name });
    this.evict();
  }

  /** Drops a snapshot now (its response was deleted). */
  remove(engine: Engine, tenant: string, name: string): void {
    this.kept.delete(`${tenant}\u0000${name}`);
    engine.deleteSnapshot(name, tenant);
  }

  evict(): void {
    for (const [key, k] of this.kept) {
      const pool = k.engine.kv.pool;
      if (this.kept.size <= this.max && pool.numFree + pool.numCached >= pool.numPages / 4) break;
      this.kept.delete(key);
      k.engine.deleteSnapshot(k.name, k.tenant);
    }
  }
}
