/**
 * Conversation snapshots kept for previous_response_id follow-ups: a cache
 * of KV state. They are evicted oldest first beyond `max`, and whenever an
 * engine's running work needs their pages (the engine asks its reclaimers
 * before preempting or refusing work). An evicted one costs only a
 * re-prefill: the stored tokens rebuild the same state. It lives with the
 * engines (their reclaimers run inside a step); the gateway names models.
 */
import type { Engine } from '../../engine/index.ts';
import type { Snapshots } from './port.ts';

interface Kept {
  engine: Engine;
  tenant: string;
  name: string;
}

export class SnapshotKeeper implements Snapshots {
  private readonly max: number;
  /** Insertion order is age order (a Map keeps it). */
  private readonly kept = new Map<string, Kept>();
  /** Engines served, by model name, with what removes the keeper's reclaimer from each. */
  private readonly engines = new Map<string, { engine: Engine; unhook: () => void }>();

  constructor(max: number, engines: Engine[] = []) {
    this.max = max;
    for (const e of engines) this.serve(e);
  }

  get size(): number {
    return this.kept.size;
  }

  /** Whether snapshots are kept at all (`max` 0: follow-ups always refill the stored tokens). */
  get enabled(): boolean {
    return this.max > 0;
  }

  /** Lets the engine take pages back from these snapshots when its work needs them. */
  serve(engine: Engine): void {
    if (this.engines.has(engine.model.name)) return;
    this.engines.set(engine.model.name, { engine, unhook: engine.addReclaimer(() => this.evictOldest(engine)) });
  }

  /** Stops serving the engines (the snapshots stay with them). */
  close(): void {
    for (const { unhook } of this.engines.values()) unhook();
    this.engines.clear();
  }

  /** Records a snapshot just saved, then evicts the oldest beyond `max` (never the one just saved). */
  keep(model: string, tenant: string, name: string): void {
    const engine = this.engines.get(model)?.engine;
    if (!engine) return;
    if (!this.enabled) return void engine.deleteSnapshot(name, tenant);
    const key = `${tenant}\u0000${name}`;
    this.kept.delete(key);
    this.kept.set(key, { engine, tenant, name });
    // Those the engine evicted itself (under pressure, or past a tenant's quota) no longer count.
    for (const [k, old] of this.kept) if (!old.engine.snapshots.peek(old.name, old.tenant)) this.kept.delete(k);
    for (const [k, old] of this.kept) {
      if (this.kept.size <= this.max || k === key) break;
      this.kept.delete(k);
      old.engine.deleteSnapshot(old.name, old.tenant);
    }
  }

  /** Drops a snapshot now. */
  drop(model: string, tenant: string, name: string): void {
    const engine = this.engines.get(model)?.engine;
    if (!engine) return;
    const key = `${tenant}\u0000${name}`;
    if (this.kept.get(key)?.engine === engine) this.kept.delete(key);
    engine.deleteSnapshot(name, tenant);
  }

  /**
   * Evicts the oldest snapshot on `engine` whose deletion gives pages back
   * (one whose pages a running context or a later snapshot of the same
   * conversation still holds would free nothing, so it stays); false when
   * no kept snapshot would free any.
   */
  private evictOldest(engine: Engine): boolean {
    for (const [k, old] of this.kept) {
      if (old.engine !== engine) continue;
      const snap = engine.snapshots.peek(old.name, old.tenant);
      if (!snap) {
        this.kept.delete(k); // gone already (deleted through the engine)
        continue;
      }
      if (!engine.wouldFree(snap)) continue;
      this.kept.delete(k);
      engine.deleteSnapshot(old.name, old.tenant);
      return true;
    }
    return false;
  }
}
