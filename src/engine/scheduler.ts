/**
 * The scheduler: continuous batching under a per-step token budget.
 *
 *   waiting ──admit (pages fit)──► running ──pending run done──► (work decides:
 *      ▲                             │                            more tokens → stays running,
 *      └──────── preempt ────────────┘                            finished → leaves)
 *            (pages released, recomputed on readmission)
 *
 * Each step, in this order, while the token budget and row limit allow:
 *   1. running decodes (one pending token each), oldest first;
 *   2. running prefills, a chunk each from what budget is left;
 *   3. waiting work, first come first served, admitted while pages fit.
 * A running work that cannot get a page preempts a running work not yet
 * scheduled this step (possibly itself): the youngest of the tenant whose
 * running work holds the most pages for its weight, so that under contention
 * each tenant keeps its share of the pool. Waiting work is admitted the
 * least loaded tenant's first (in order within a tenant) and never skipped
 * over for want of pages, so a large request cannot starve.
 *
 * A tenant may also have a cap on the pages its running work holds: work
 * that would pass it preempts the tenant's own youngest work (or waits, and
 * others' waiting work goes ahead), and work that could not fit under the
 * cap even alone is refused (`takeRefused`).
 *
 * `schedule` returns data; the engine builds the batch and runs it.
 */
import type { Context } from './context.ts';
import type { KvCache, PagePlan, SlotCopies } from './kv-cache.ts';
import type { HeadRow } from './sampling.ts';

export interface Work {
  readonly ctx: Context;
  /** Logits are wanted for the last `numSample` pending tokens. */
  readonly numSample: number;
  /** Sliding-window attention, if the model uses it. */
  readonly window?: number | null;
  /** Custom attention rule (see BatchRow.attend). */
  readonly attend?: (pos: number, keyPos: number) => boolean;
  /** Admission order; -1 while waiting. */
  admittedAt: number;
  /** Prompt tokens served from the prefix cache so far. */
  numCachedTokens: number;
  /** What the work needs of each sampled row besides its greedy token: full logits, the sampling head, or nothing. */
  readonly needs: 'best' | 'logits' | 'head';
  /** 1 / temperature for the driver's probabilities. */
  readonly invTemperature: number;
}

/** What a work receives for each of its sampled rows. */
export interface SampledRow {
  /** Null unless the work needs logits. */
  logits: Float32Array | null;
  /** The row's full distribution: only for a head row that asked for it (`Generation.wantsFullRow`). */
  probs: Float32Array | null;
  /** Null unless the work needs the head. */
  head: HeadRow | null;
  best: number;
  bestLogprob: number;
}

export interface Scheduled {
  work: Work;
  plan: PagePlan;
  /** Tokens run this step: positions [plan.start, plan.upTo). */
  numTokens: number;
  /** Logits rows returned: the last `numSample` of the tokens run. */
  numSample: number;
}

/** A tenant's part of the KV pool under contention. */
export interface TenantShare {
  /** Relative weight: under contention, pages held per unit of weight are evened out. Default 1. */
  weight: number;
  /** Most pages its running work may hold together (distinct pages: forks share theirs). Default: no cap. */
  maxPages: number;
}

export const EQUAL_SHARE: TenantShare = { weight: 1, maxPages: Infinity };

export interface SchedulerOptions {
  maxTokensPerStep: number;
  maxRowsPerStep: number;
  /** Frees pages held outside running work (e.g. snapshots kept as a cache); true if it freed any. Tried before preempting or leaving work waiting. */
  reclaim?: () => boolean;
  /** Each tenant's share (default: equal weights, no caps). */
  shareOf?: (tenant: string) => TenantShare;
}

/** A work refused because it could never fit under its tenant's cap. */
export interface Refused {
  work: Work;
  /** Pages it needs alone, and its tenant's cap. */
  needed: number;
  cap: number;
}

export class Scheduler {
  readonly waiting: Work[] = [];
  readonly running: Work[] = [];
  numPreemptions = 0;
  /** Prompt tokens looked up in the prefix cache at admission, and those it served (vLLM's queries and hits, in tokens). */
  numPrefixQueryTokens = 0;
  numPrefixHitTokens = 0;
  private readonly kv: KvCache;
  private readonly options: SchedulerOptions;
  private readonly shareOf: (tenant: string) => TenantShare;
  private admissions = 0;
  private refused: Refused[] = [];

  constructor(kv: KvCache, options: SchedulerOptions) {
    this.kv = kv;
    this.options = options;
    this.shareOf = options.shareOf ?? (() => EQUAL_SHARE);
  }

  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  submit(work: Work): void {
    work.admittedAt = -1;
    this.waiting.push(work);
  }

  /** Removes a work that finished or was cancelled. */
  remove(work: Work): void {
    for (const list of [this.running, this.waiting]) {
      const i = list.indexOf(work);
      if (i >= 0) list.splice(i, 1);
    }
  }

  /** Puts running work back first in line, its pages already given back (its step failed): it is computed again. */
  requeue(work: Work): void {
    this.remove(work);
    work.admittedAt = -1;
    this.waiting.unshift(work);
  }

  schedule(copies: SlotCopies): Scheduled[] {
    const out: Scheduled[] = [];
    const chosen = new Set<Work>();
    let budget = this.options.maxTokensPerStep;
    const rowsLeft = () => this.options.maxRowsPerStep - out.length;
    // Built on first need (a cap to check, a victim to choose), then kept up to date through the step.
    let held: TenantPages | null = null;
    const pages = () => (held ??= TenantPages.of(this.running));
    const waitingTenants = new Set(this.waiting.map((w) => w.ctx.tenant));
    const fair = this.fairShares(pages);
    const take = (work: Work, plan: PagePlan, wasRunning: boolean) => {
      if (wasRunning) held?.remove(work.ctx); // a work just admitted was not counted: only running work is
      budget -= this.take(work, plan, copies, out);
      held?.add(work.ctx);
      chosen.add(work);
    };
    const preempt = (work: Work) => {
      held?.remove(work.ctx);
      this.preempt(work);
    };

    const tryRunning = (work: Work): void => {
      if (budget <= 0 || rowsLeft() <= 0 || !this.running.includes(work)) return;
      for (;;) {
        const plan = this.kv.plan(work.ctx, budget, false);
        if (this.overCap(work, plan, pages, fair)) {
          // Past its tenant's cap: the tenant's own youngest work gives way (possibly this one).
          const victim = this.youngestOf(work.ctx.tenant, chosen) ?? work;
          preempt(victim);
          if (victim === work) return;
          continue;
        }
        if (this.kv.canCommit(plan)) return take(work, plan, true);
        if (this.options.reclaim?.()) continue;
        const victim = this.victim(chosen, pages()) ?? work;
        preempt(victim);
        if (victim === work) return;
      }
    };

    for (const w of [...this.running]) if (w.ctx.numPending === 1) tryRunning(w);
    for (const w of [...this.running]) if (w.ctx.numPending > 1) tryRunning(w);

    // Waiting work, the least loaded tenant's first (in order within a tenant, and on a tie); work held back by
    // its own tenant's cap lets the rest go ahead.
    const heldBack = new Set<Work>();
    while (budget > 0 && rowsLeft() > 0) {
      const work = this.nextWaiting(heldBack, pages, waitingTenants.size > 1);
      if (!work) break;
      const cap = this.shareOf(work.ctx.tenant).maxPages;
      const needed = Math.ceil(work.ctx.length / this.kv.pageSize);
      if (needed > cap) {
        this.waiting.splice(this.waiting.indexOf(work), 1);
        this.refused.push({ work, needed, cap });
        continue;
      }
      const usePrefix = work.numSample <= 1;
      const plan = this.kv.plan(work.ctx, budget, usePrefix);
      if (this.overCap(work, plan, pages, fair)) {
        heldBack.add(work);
        continue;
      }
      if (!this.kv.canCommit(plan)) {
        if (this.options.reclaim?.()) continue;
        break;
      }
      this.waiting.splice(this.waiting.indexOf(work), 1);
      if (usePrefix) this.countPrefixQuery(work.ctx, plan);
      work.admittedAt = this.admissions++;
      take(work, plan, false);
      this.running.push(work);
    }
    return out;
  }

  /**
   * The waiting work to admit next: the first of the tenant whose running work
   * holds the fewest pages for its weight (the first in line when only one
   * tenant waits), skipping work held back by its tenant's cap.
   */
  private nextWaiting(heldBack: ReadonlySet<Work>, pages: () => TenantPages, mixed: boolean): Work | undefined {
    const first = this.waiting.find((w) => !heldBack.has(w));
    if (!first || !mixed) return first;
    const t = pages();
    const load = (w: Work) => t.held(w.ctx.tenant) / this.shareOf(w.ctx.tenant).weight;
    let best = first;
    let bestLoad = load(first);
    for (const w of this.waiting) {
      if (heldBack.has(w) || w.ctx.tenant === best.ctx.tenant) continue;
      const l = load(w);
      if (l < bestLoad) [best, bestLoad] = [w, l];
    }
    return best;
  }

  /** Work refused since the last call: it could never fit under its tenant's cap (the caller fails it). */
  takeRefused(): Refused[] {
    const out = this.refused;
    this.refused = [];
    return out;
  }

  /**
   * Each tenant's fair share of the pool, while there is a shortage: work of
   * another tenant waits that its own cap admits but the pages available
   * cannot hold. A share is the tenant's weight's part of the pool among the
   * tenants running or so waiting (a tenant whose waiting work is all held
   * back by its own cap does not count). Null when nobody so waits.
   */
  private fairShares(pages: () => TenantPages): ((tenant: string) => number) | null {
    if (this.waiting.length === 0) return null;
    // Per waiting tenant: the fewest pages one of its waiting works needs, of those its cap admits.
    const need = new Map<string, number>();
    for (const w of this.waiting) {
      const t = w.ctx.tenant;
      const n = Math.ceil(w.ctx.length / this.kv.pageSize);
      const cap = this.shareOf(t).maxPages;
      if (cap !== Infinity && pages().held(t) + n > cap) continue;
      need.set(t, Math.min(need.get(t) ?? Infinity, n));
    }
    if (need.size === 0) return null;
    const weights = new Map<string, number>();
    for (const w of this.running) weights.set(w.ctx.tenant, this.shareOf(w.ctx.tenant).weight);
    for (const t of need.keys()) weights.set(t, this.shareOf(t).weight);
    if (weights.size < 2) return null;
    let total = 0;
    for (const w of weights.values()) total += w;
    const pool = this.kv.pool;
    return (tenant) => {
      for (const [other, n] of need) if (other !== tenant && n > pool.numAvailable) return Math.max(1, Math.floor((pool.numPages * weights.get(tenant)!) / total));
      return Infinity;
    };
  }

  /**
   * Whether committing the plan would leave the work's tenant past its cap,
   * or, under a shortage, past its fair share when the tenant has other work
   * running (one work alone may always grow, so that none starves). It counts
   * the distinct pages the tenant's running work would hold: the context's
   * own when it is not running yet, prefix hits and new pages it does not
   * hold already, and the private copy of a shared last page when another of
   * the tenant's works keeps the original.
   */
  private overCap(work: Work, plan: PagePlan, pages: () => TenantPages, fair: ((tenant: string) => number) | null): boolean {
    const tenant = work.ctx.tenant;
    const running = work.admittedAt >= 0;
    let cap = this.shareOf(tenant).maxPages;
    if (fair && pages().works(tenant) - (running ? 1 : 0) > 0) cap = Math.min(cap, fair(tenant));
    if (cap === Infinity) return false;
    const t = pages();
    let extra = plan.numNew;
    const ctx = work.ctx;
    for (const p of ctx.pageTable) if (!t.holds(tenant, p)) extra++;
    for (const p of plan.hits) if (!t.holds(tenant, p)) extra++;
    if (plan.copyLast) {
      const old = ctx.pageTable[Math.floor(ctx.numComputed / this.kv.pageSize)];
      if (old !== undefined && t.holders(tenant, old) > (running ? 1 : 0)) extra++;
    }
    return t.held(tenant) + extra > cap;
  }

  /**
   * Counted once per admission (a preempted work again when readmitted, as
   * vLLM does), before the commit moves its computed prefix: every pending
   * token is a query, a prompt shorter than a page included.
   */
  private countPrefixQuery(ctx: Context, plan: PagePlan): void {
    if (!this.kv.prefixCache.enabled || ctx.customKv) return;
    this.numPrefixQueryTokens += ctx.length - ctx.numComputed;
    this.numPrefixHitTokens += plan.hits.length * this.kv.pageSize;
  }

  private take(work: Work, plan: PagePlan, copies: SlotCopies, out: Scheduled[]): number {
    this.kv.commit(plan, copies);
    const numTokens = plan.upTo - plan.start;
    // Rows at positions >= length - numSample are sampled, whichever chunk they fall in.
    const firstSampled = work.ctx.length - work.numSample;
    const numSample = Math.max(0, plan.upTo - Math.max(plan.start, firstSampled));
    out.push({ work, plan, numTokens, numSample });
    return numTokens;
  }

  /** The youngest running work not chosen this step of the tenant whose running work holds the most pages per unit of its weight. */
  private victim(chosen: ReadonlySet<Work>, pages: TenantPages): Work | undefined {
    const load = (w: Work) => pages.held(w.ctx.tenant) / this.shareOf(w.ctx.tenant).weight;
    let best: Work | undefined;
    for (const w of this.running) {
      if (chosen.has(w)) continue;
      // Later in `running` is younger: on a tie of tenants, the later one wins.
      if (!best || load(w) >= load(best)) best = w;
    }
    return best;
  }

  /** The tenant's youngest running work not chosen this step. */
  private youngestOf(tenant: string, chosen: ReadonlySet<Work>): Work | undefined {
    for (let i = this.running.length - 1; i >= 0; i--) {
      const w = this.running[i]!;
      if (w.ctx.tenant === tenant && !chosen.has(w)) return w;
    }
    return undefined;
  }

  private preempt(work: Work): void {
    this.numPreemptions++;
    this.kv.drop(work.ctx);
    this.requeue(work);
  }
}

/** The distinct pages each tenant's running work holds (forks share theirs), kept as work is run and preempted. */
class TenantPages {
  private readonly counts = new Map<string, Map<number, number>>();
  private readonly numWorks = new Map<string, number>();

  static of(running: readonly Work[]): TenantPages {
    const t = new TenantPages();
    for (const w of running) t.add(w.ctx);
    return t;
  }

  add(ctx: Context): void {
    this.numWorks.set(ctx.tenant, (this.numWorks.get(ctx.tenant) ?? 0) + 1);
    let m = this.counts.get(ctx.tenant);
    if (!m) this.counts.set(ctx.tenant, (m = new Map()));
    for (const p of ctx.pageTable) m.set(p, (m.get(p) ?? 0) + 1);
  }

  remove(ctx: Context): void {
    this.numWorks.set(ctx.tenant, (this.numWorks.get(ctx.tenant) ?? 0) - 1);
    const m = this.counts.get(ctx.tenant);
    if (!m) return;
    for (const p of ctx.pageTable) {
      const n = (m.get(p) ?? 0) - 1;
      if (n > 0) m.set(p, n);
      else m.delete(p);
    }
  }

  /** Running works of the tenant. */
  works(tenant: string): number {
    return this.numWorks.get(tenant) ?? 0;
  }

  held(tenant: string): number {
    return this.counts.get(tenant)?.size ?? 0;
  }

  holds(tenant: string, page: number): boolean {
    return this.counts.get(tenant)?.has(page) ?? false;
  }

  /** How many of the tenant's running works hold the page. */
  holders(tenant: string, page: number): number {
    return this.counts.get(tenant)?.get(page) ?? 0;
  }
}
