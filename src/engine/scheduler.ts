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
 * running work holds the most pages, so that under contention each tenant
 * keeps a fair share of the pool. Waiting work is never skipped over, so a
 * large request cannot starve.
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

export interface SchedulerOptions {
  maxTokensPerStep: number;
  maxRowsPerStep: number;
  /** Frees pages held outside running work (e.g. snapshots kept as a cache); true if it freed any. Tried before preempting or leaving work waiting. */
  reclaim?: () => boolean;
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
  private admissions = 0;

  constructor(kv: KvCache, options: SchedulerOptions) {
    this.kv = kv;
    this.options = options;
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

  schedule(copies: SlotCopies): Scheduled[] {
    const out: Scheduled[] = [];
    const chosen = new Set<Work>();
    let budget = this.options.maxTokensPerStep;
    const rowsLeft = () => this.options.maxRowsPerStep - out.length;

    const tryRunning = (work: Work): void => {
      if (budget <= 0 || rowsLeft() <= 0 || !this.running.includes(work)) return;
      for (;;) {
        const plan = this.kv.plan(work.ctx, budget, false);
        if (this.kv.canCommit(plan)) {
          budget -= this.take(work, plan, copies, out);
          chosen.add(work);
          return;
        }
        if (this.options.reclaim?.()) continue;
        const victim = this.victim(chosen) ?? work;
        this.preempt(victim);
        if (victim === work) return;
      }
    };

    for (const w of [...this.running]) if (w.ctx.numPending === 1) tryRunning(w);
    for (const w of [...this.running]) if (w.ctx.numPending > 1) tryRunning(w);

    while (this.waiting.length > 0 && budget > 0 && rowsLeft() > 0) {
      const work = this.waiting[0]!;
      const usePrefix = work.numSample <= 1;
      const plan = this.kv.plan(work.ctx, budget, usePrefix);
      if (!this.kv.canCommit(plan)) {
        if (this.options.reclaim?.()) continue;
        break;
      }
      this.waiting.shift();
      if (usePrefix) this.countPrefixQuery(work.ctx, plan);
      work.admittedAt = this.admissions++;
      this.running.push(work);
      budget -= this.take(work, plan, copies, out);
      chosen.add(work);
    }
    return out;
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

  /** The youngest running work not chosen this step of the tenant whose running work holds the most pages (distinct: forks share theirs). */
  private victim(chosen: ReadonlySet<Work>): Work | undefined {
    const pages = new Map<string, Set<number>>();
    for (const w of this.running) {
      let set = pages.get(w.ctx.tenant);
      if (!set) pages.set(w.ctx.tenant, (set = new Set()));
      for (const p of w.ctx.pageTable) set.add(p);
    }
    const held = new Map([...pages].map(([t, set]) => [t, set.size]));
    let best: Work | undefined;
    for (const w of this.running) {
      if (chosen.has(w)) continue;
      // Later in `running` is younger: on a tie of tenants, the later one wins.
      if (!best || held.get(w.ctx.tenant)! >= held.get(best.ctx.tenant)!) best = w;
    }
    return best;
  }

  private preempt(work: Work): void {
    this.numPreemptions++;
    this.kv.drop(work.ctx);
    this.remove(work);
    work.admittedAt = -1;
    this.waiting.unshift(work);
  }
}
