/**
 * The engine: the single owner of contexts, pages and the schedule, and the
 * step loop that drives the driver.
 *
 *   loop while there is work:
 *     schedule (pages committed, copies for copy-on-write collected)
 *     → build one batch → driver.run → advance contexts (full pages become findable)
 *     → hand each finished pending run its logits (forward: resolve; generation: sample, append, stream)
 *
 * Everything here runs on one thread; the driver's work happens in its own.
 */
import type { Driver, StepResult } from '../../drivers/driver.ts';
import type { LoadedModel } from '../model/load.ts';
import { buildBatch, type BatchRow, type RowSampling } from './batch-builder.ts';
import { Context } from './context.ts';
import * as errors from './errors.ts';
import { ForwardWork } from './forward-work.ts';
import { Generation, type GenerateOptions } from './generation.ts';
import { Grammars, type GrammarsOptions } from './grammar/grammars.ts';
import { KvCache } from './kv-cache.ts';
import { logSumExp, Sampler, topK, type SampleResult, type SamplingParams, type TokenHistory, type TokenMask, type TopLogprob } from './sampler.ts';
import { EQUAL_SHARE, Scheduler, type SampledRow, type Scheduled, type TenantShare, type Work } from './scheduler.ts';
import { HEAD_DRAWS, headRow } from './sampling.ts';
import { Snapshots } from './snapshots.ts';

export interface EngineOptions {
  /** Tokens per step across all sequences; long prompts are prefilled in chunks of what is left. Default 512. */
  maxTokensPerStep?: number;
  /** Sequences per step. Default 256. */
  maxRowsPerStep?: number;
  /** Reuse KV pages of identical prefixes. Default true. */
  prefixCaching?: boolean;
  /** Grammar cache size and compile time limit. */
  grammars?: GrammarsOptions;
  /**
   * Sampled rows draw from the driver's candidates and tail draws (true, the
   * default), or every such row from its full distribution on the host
   * (false: the same tokens, more host work; for comparison and tests).
   */
  samplingHead?: boolean;
  /** KV pages one tenant's named snapshots may hold together (default: half the pool). */
  snapshotPagesPerTenant?: number;
  /**
   * How long work that cannot get pages waits for room before it fails as
   * overloaded (default 30 s). Work that could not fit in the whole pool
   * fails at once (kv_cache_exhausted).
   */
  queueTimeoutMs?: number;
  /** Tenants' shares of the pool under contention: weights and caps (others: weight 1, no cap). */
  tenantShares?: ReadonlyMap<string, Partial<TenantShare>>;
}

export interface StepStats {
  rows: number;
  tokens: number;
  sampled: number;
  /** Wall time of driver.run as seen by the engine. */
  driverMs: number;
  /** Scheduling and batch building. */
  scheduleMs: number;
  /** Handing out logits: sampling, detokenizing, streaming. */
  sampleMs: number;
  /** Rows sampled under a token mask: a grammar's, or min_tokens' (stop tokens held back). */
  constrained: number;
  /** Computing their grammar masks: before the run for masks the driver applies (maskWaitMs), overlapped with it for the others. */
  maskMs: number;
  /** The part of maskMs the step waited for before the driver could run. */
  maskWaitMs: number;
  /** Tokens drawn by the sampling head, and from full distributions (rows the head could not decide, top-k beyond the head, or the head off). */
  headRows: number;
  fullRows: number;
  /** Rows the head could not decide this step (run again next step with their full distribution). */
  undecided: number;
}

export interface EngineStats {
  pages: { total: number; free: number; cached: number; inUse: number; pageSize: number };
  /** Page lookups (hits, misses), and the prompt tokens looked up at admission and served from it (vLLM's queries and hits). */
  prefixCache: { hits: number; misses: number; entries: number; queryTokens: number; hitTokens: number };
  running: number;
  waiting: number;
  contexts: number;
  snapshots: number;
  steps: number;
  preemptions: number;
  promptTokensComputed: number;
  decodeTokensComputed: number;
  /** Generations started under a grammar, and the grammar cache's counters. */
  grammar: { constrained: number; compiled: number; cacheHits: number; refused: number; matchers: number };
  /** Tokens drawn by the sampling head, and from full distributions on the host (see StepStats). */
  sampling: { headRows: number; fullRows: number };
}

export interface ForwardOptions {
  /** Return the logits of the last n pending tokens (default 1, 0 for none). */
  numLogits?: number;
  /** Sample from the last row on the host (the logits are then not returned). */
  sampling?: SamplingParams | Sampler;
  history?: TokenHistory;
  mask?: TokenMask;
  /** Custom attention for the pending tokens. */
  attend?: (pos: number, keyPos: number) => boolean;
}

/** A prompt token's score (Engine.promptLogprobs). */
export interface ScoredToken {
  token: number;
  /** Its log-probability after the tokens before it. */
  logprob: number;
  /** Its place in the vocabulary by probability, 1 for the most likely (tokens as likely count before it, as in vLLM). */
  rank: number;
  /** The most likely tokens in its place, most likely first. */
  top: TopLogprob[];
}

export interface ForwardResult {
  logits: Float32Array[];
  sample?: SampleResult;
}

export class Engine {
  readonly model: LoadedModel;
  readonly driver: Driver;
  readonly kv: KvCache;
  readonly scheduler: Scheduler;
  readonly snapshots: Snapshots;
  numSteps = 0;
  /** Times the driver went down mid-step and started again over the same KV pool. */
  numDriverRestarts = 0;
  private driverDown = false;
  numPromptTokensComputed = 0;
  numDecodeTokensComputed = 0;
  numConstrainedGenerations = 0;
  numHeadRows = 0;
  numFullRows = 0;
  /** Called after every step (metrics, benchmarks). */
  private readonly stepListeners = new Set<(s: StepStats) => void>();
  /** Asked, in order, to free pages held outside running work (see addReclaimer). */
  private readonly reclaimers: Array<() => boolean> = [];
  private nextContextId = 1;
  private readonly contexts = new Map<number, Context>();
  private readonly active = new Map<Context, Work>();
  private looping = false;
  private closed = false;
  private grammarsOf: Grammars | null = null;
  private readonly grammarOptions: GrammarsOptions;
  /** Whether sampled rows draw from the driver's head (EngineOptions.samplingHead). */
  private readonly samplingHead: boolean;
  private readonly queueTimeoutMs: number;
  private tenantShares = new Map<string, TenantShare>();
  /** Work run again after its step's driver went down, until a step of it succeeds (a second failure in a row fails it). */
  private readonly rerun = new WeakSet<Work>();
  /** Since when each waiting work has been first in line with nothing able to run. */
  private readonly stuckSince = new WeakMap<Work, number>();

  constructor(model: LoadedModel, driver: Driver, options: EngineOptions = {}) {
    this.model = model;
    this.driver = driver;
    this.kv = new KvCache(driver.info.numPages, driver.info.pageSize, options.prefixCaching ?? true);
    this.scheduler = new Scheduler(this.kv, {
      maxTokensPerStep: options.maxTokensPerStep ?? 512,
      maxRowsPerStep: options.maxRowsPerStep ?? 256,
      // Snapshots kept by their owner as a cache first (the gateway's), then any snapshot, least recently used first.
      reclaim: () => [...this.reclaimers].some((r) => r()) || this.snapshots.evictOldest() || this.evictIdleContext(),
      shareOf: (tenant) => this.shareOf(tenant),
    });
    if (options.tenantShares) this.setTenantShares(options.tenantShares);
    const perTenant = options.snapshotPagesPerTenant ?? Math.max(1, Math.floor(driver.info.numPages / 2));
    this.snapshots = new Snapshots(this.kv, (tenant) => this.newContext(tenant, false), perTenant);
    this.grammarOptions = options.grammars ?? {};
    this.queueTimeoutMs = options.queueTimeoutMs ?? 30_000;
    this.samplingHead = options.samplingHead ?? true;
  }

  /**
   * Sets the tenants' shares of the KV pool (replacing earlier ones): under
   * contention a tenant's running work holds pages in proportion to its weight,
   * and never more than its cap (work past it waits for the tenant's own work;
   * work that could not fit under it alone is refused).
   */
  setTenantShares(shares: ReadonlyMap<string, Partial<TenantShare>>): void {
    const out = new Map<string, TenantShare>();
    for (const [tenant, s] of shares) {
      const weight = s.weight ?? 1;
      const maxPages = s.maxPages ?? Infinity;
      if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`tenant ${tenant}: a weight must be a positive number, got ${weight}`);
      if (!(maxPages >= 1)) throw new RangeError(`tenant ${tenant}: a page cap must be at least 1, got ${maxPages}`);
      out.set(tenant, { weight, maxPages });
    }
    this.tenantShares = out;
  }

  /** Calls `listener` after every step (metrics, benchmarks); returns what removes it. */
  addStepListener(listener: (s: StepStats) => void): () => void {
    this.stepListeners.add(listener);
    return () => void this.stepListeners.delete(listener);
  }

  /**
   * Adds a way to free pages held outside running work (snapshots kept as a
   * cache by their owner), asked when work cannot get pages: before a
   * preemption, and before waiting work is left waiting or failed. It returns
   * whether it freed any; reclaimers are asked in the order they were added,
   * before the engine's own snapshots and idle contexts. Returns what removes it.
   */
  addReclaimer(reclaim: () => boolean): () => void {
    this.reclaimers.push(reclaim);
    return () => {
      const i = this.reclaimers.indexOf(reclaim);
      if (i >= 0) this.reclaimers.splice(i, 1);
    };
  }

  /** Tokens per KV page. */
  get pageSize(): number {
    return this.kv.pageSize;
  }

  /** KV pages in the pool. */
  get numPages(): number {
    return this.kv.pool.numPages;
  }

  /** Whether releasing the context (or deleting the snapshot) would give a page back to the pool. */
  wouldFree(ctx: Context): boolean {
    return this.kv.wouldFree(ctx);
  }

  /**
   * Tokens a generation on the context may still add: up to the model's
   * length, and to where the context would pass its tenant's page cap.
   */
  roomFor(ctx: Context): number {
    const cap = this.shareOf(ctx.tenant).maxPages;
    return Math.max(0, Math.min(this.model.config.maxPositionEmbeddings, cap * this.kv.pageSize) - ctx.length);
  }

  /** Throws when the context could not fit under its tenant's page cap even alone. */
  private checkTenantCap(ctx: Context): void {
    const cap = this.shareOf(ctx.tenant).maxPages;
    const needed = Math.ceil(ctx.length / this.kv.pageSize);
    if (needed > cap) throw errors.tenantKvCap(needed, cap);
  }

  /** The tenant's share of the KV pool. */
  shareOf(tenant: string): TenantShare {
    return this.tenantShares.get(tenant) ?? EQUAL_SHARE;
  }

  /** The model's grammars (compiled on first use, cached by source). */
  get grammars(): Grammars {
    this.grammarsOf ??= new Grammars(this.model.tokenizer, this.model.config.vocabSize, this.model.eosTokenIds, this.grammarOptions);
    return this.grammarsOf;
  }

  // ---- contexts ----

  createContext(tenant = 'default'): Context {
    return this.newContext(tenant, true);
  }

  /** Contexts alive (not released), snapshots excluded. */
  get numContexts(): number {
    return this.contexts.size;
  }

  /**
   * Appends tokens. `positions` gives their RoPE positions (default: after the
   * last token's); a context with chosen positions keeps its KV out of the
   * prefix cache.
   */
  append(ctx: Context, tokens: readonly number[], positions?: readonly number[]): void {
    this.checkIdle(ctx);
    const V = this.model.config.vocabSize;
    for (const t of tokens) if (!Number.isInteger(t) || t < 0 || t >= V) throw errors.invalidToken(t, V);
    const max = this.model.config.maxPositionEmbeddings;
    if (ctx.length + tokens.length > max) throw errors.contextTooLong(ctx.length + tokens.length, max);
    if (positions) {
      if (positions.length !== tokens.length) throw new errors.EngineError('invalid_positions', `${positions.length} positions for ${tokens.length} tokens`);
      for (const p of positions) if (!Number.isInteger(p) || p < 0 || p >= max) throw new errors.EngineError('invalid_positions', `position ${p} is outside [0, ${max})`);
      if (!ctx.ropePositions) ctx.ropePositions = Array.from({ length: ctx.length }, (_, i) => i);
      ctx.customKv = true;
      for (let i = 0; i < tokens.length; i++) {
        ctx.tokens.push(tokens[i]!);
        ctx.ropePositions.push(positions[i]!);
      }
      return;
    }
    for (const t of tokens) ctx.push(t); // no spread: a long prompt would overflow the call stack
  }

  /** A new context with the same tokens; full pages are shared, the partial last page is copied on first write. */
  fork(ctx: Context): Context {
    this.checkAlive(ctx);
    const child = this.newContext(ctx.tenant, true);
    this.kv.share(ctx, child);
    return child;
  }

  truncate(ctx: Context, length: number): void {
    this.checkIdle(ctx);
    this.kv.truncate(ctx, Math.max(0, length));
  }

  /** Releases the context's pages; cancels anything running on it. */
  release(ctx: Context): void {
    if (ctx.released) return;
    const work = this.active.get(ctx);
    if (work) this.cancelWork(work, errors.contextReleased(ctx.id));
    ctx.released = true;
    this.kv.drop(ctx);
    this.contexts.delete(ctx.id);
  }

  // ---- snapshots (named, per tenant, outliving the request that made them) ----

  saveSnapshot(ctx: Context, name: string): void {
    this.checkAlive(ctx);
    this.snapshots.save(ctx, name);
  }

  openSnapshot(name: string, tenant = 'default'): Context {
    const snap = this.snapshots.get(name, tenant);
    if (!snap) throw errors.snapshotNotFound(name, this.snapshots.evictedBecause(name, tenant));
    return this.fork(snap);
  }

  deleteSnapshot(name: string, tenant = 'default'): boolean {
    return this.snapshots.delete(name, tenant);
  }

  listSnapshots(tenant = 'default'): string[] {
    return this.snapshots.names(tenant);
  }

  // ---- inference ----

  /** Computes the pending tokens; returns the last logits rows, or a host-side sample of the last row. */
  async forward(ctx: Context, options: ForwardOptions = {}): Promise<ForwardResult> {
    this.checkIdle(ctx);
    this.ensurePending(ctx);
    const numLogits = options.sampling ? 1 : Math.min(options.numLogits ?? 1, ctx.numPending);
    if (options.attend) ctx.customKv = true; // before planning: these pages must not be shared by token content
    const work = new ForwardWork(ctx, numLogits, this.model.config.slidingWindow, options.attend);
    this.submit(work);
    const rows = await work.done;
    if (!options.sampling) return { logits: rows };
    const sampler = options.sampling instanceof Sampler ? options.sampling : new Sampler(options.sampling);
    return { logits: [], sample: sampler.sample(rows[0]!, options.history, options.mask) };
  }

  /**
   * Scores the pending tokens: per token, its log-probability after the tokens
   * before it and the `top` most likely tokens in its place (null for a
   * context's first token, which follows nothing, and for the first pending
   * token of a context with custom-attention KV). Computes them in the shared
   * batch, with the token before them again when there is one (its row scores
   * the first), and never from the prefix cache: a work with several rows
   * takes no prefix hits, so the numbers do not depend on it.
   */
  async promptLogprobs(ctx: Context, top = 0): Promise<Array<ScoredToken | null>> {
    this.checkIdle(ctx);
    // Pending as the holder sees it: an idle context whose pages were given back computes the rest again too.
    const first = ctx.settled;
    const scores: Array<ScoredToken | null> = new Array(ctx.numUnsettled).fill(null);
    if (scores.length === 0) return scores;
    // The token before them is computed again to score the first, unless its KV came from a custom attention
    // rule (tree-shaped decoding), which a causal recompute would change: then the first pending token has no score.
    const scoreFirst = first > 0 && !ctx.customKv;
    if (scoreFirst && ctx.numComputed === first) this.kv.rewindOne(ctx);
    const rows = ctx.length - (scoreFirst ? first - 1 : first);
    const work = new ForwardWork(ctx, rows, this.model.config.slidingWindow, undefined, (pos, logits) => {
      const target = pos + 1;
      if (target < first || target > first - 1 + scores.length) return; // the last row predicts a token not yet there
      scores[target - first] = scoreToken(logits, ctx.tokens[target]!, top);
    });
    this.submit(work);
    await work.done;
    return scores;
  }

  /** Starts a host-run generation on `ctx` (its pending tokens are the prompt). */
  generate(ctx: Context, options: GenerateOptions = {}): Generation {
    this.checkIdle(ctx);
    this.ensurePending(ctx);
    // Checked here too: past its cap the room is 0, and it would end at once as if by its length.
    this.checkTenantCap(ctx);
    const room = this.roomFor(ctx);
    const maxTokens = Math.max(0, Math.min(options.maxTokens ?? room, room));
    const gen = new Generation(ctx, this.model.tokenizer, this.model.config.vocabSize, this.model.eosTokenIds, maxTokens, this.model.config.slidingWindow, options, (g) =>
      this.finishWork(g),
    );
    if (maxTokens === 0) {
      gen.finish('length');
      return gen;
    }
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) {
        gen.cancel();
        return gen;
      }
      const onAbort = () => gen.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
      void gen.result.then(() => signal.removeEventListener('abort', onAbort));
    }
    gen.queuedAt = performance.now();
    try {
      this.submit(gen);
    } catch (err) {
      gen.finish('error', null, err as Error); // releases what it holds (its grammar)
      throw err;
    }
    if (options.grammar) this.numConstrainedGenerations++;
    return gen;
  }

  /** Stops the loop, fails everything in flight and closes the driver. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const work of [...this.active.values()]) this.cancelWork(work, errors.engineClosed());
    this.grammarsOf?.close();
    await this.driver.close();
  }

  // ---- the step loop ----

  private submit(work: Work): void {
    if (this.closed) throw errors.engineClosed();
    const needed = Math.ceil(work.ctx.length / this.kv.pageSize);
    if (needed > this.kv.pool.numPages) throw errors.kvExhausted(needed, this.kv.pool.numPages, this.kv.pool.numInUse);
    this.checkTenantCap(work.ctx);
    this.active.set(work.ctx, work);
    work.ctx.busy = true;
    this.scheduler.submit(work);
    void this.loop();
  }

  private async loop(): Promise<void> {
    if (this.looping) return;
    this.looping = true;
    try {
      // Work submitted in the same turn of the event loop (a fork's n choices, requests that arrived
      // together) starts in the same step rather than the first alone.
      await new Promise<void>((resolve) => setImmediate(resolve));
      while (this.scheduler.hasWork && !this.closed) await this.step();
    } catch (err) {
      // A bug in the engine itself: fail what is in flight rather than the process.
      for (const work of [...this.active.values()]) this.cancelWork(work, err as Error);
    } finally {
      this.looping = false;
    }
  }

  private async step(): Promise<void> {
    const t0 = performance.now();
    const copies = { from: [] as number[], to: [] as number[] };
    const planned = this.scheduler.schedule(copies);
    for (const r of this.scheduler.takeRefused()) this.cancelWork(r.work, errors.tenantKvCap(r.needed, r.cap));
    if (planned.length === 0) {
      // Nothing fits now: wait for room (released contexts, finished work), within the queueing time.
      if (!this.failStuck()) await new Promise((r) => setTimeout(r, 5));
      return;
    }
    // Masks the driver applies are needed before the batch runs; the others are computed while it runs.
    const isConstrained = (s: Scheduled) => s.numSample > 0 && s.work instanceof Generation && s.work.isConstrained;
    const constrained = planned.filter(isConstrained);
    const inGraph = constrained.filter((s) => (s.work as Generation).maskInGraph);
    const tm = performance.now();
    // (A grammar found complete here still runs its row: the schedule has committed its pages and
    // copy-on-write copies, which the driver applies; the generation ends when its row is delivered.)
    if (inGraph.length > 0) await Promise.all(inGraph.map((s) => (s.work as Generation).prepareMask()));
    const maskWaitMs = performance.now() - tm;
    const V = this.driver.info.vocabSize;
    const rows: BatchRow[] = planned.map((s) => ({
      pageTable: s.work.ctx.pageTable,
      pastLen: s.plan.start,
      tokens: s.work.ctx.tokens.slice(s.plan.start, s.plan.upTo),
      ...(s.work.ctx.ropePositions ? { positions: s.work.ctx.ropePositions } : {}),
      numSample: s.numSample,
      window: s.work.window ?? null,
      ...(s.work.attend ? { attend: s.work.attend } : {}),
      ...(s.numSample > 0 ? { sample: this.rowSampling(s.work, V) } : {}),
    }));
    const batch = buildBatch(rows, this.kv.pageSize, this.kv.pool.numPages, { ...this.model.config, headDraws: HEAD_DRAWS }, copies);
    for (const s of planned) s.work.numCachedTokens += s.plan.hits.length * this.kv.pageSize;
    // The first step that runs a generation ends its queue time (a preempted one keeps its first, as vLLM's).
    for (const s of planned) if (s.work instanceof Generation && s.work.scheduledAt === 0) s.work.scheduledAt = t0;
    const t1 = performance.now();
    const running = this.driver.run(batch);
    running.catch(() => undefined); // handled below, after the masks
    const onHost = constrained.filter((s) => !(s.work as Generation).maskInGraph);
    const masking = onHost.length > 0 ? Promise.all(onHost.map((s) => (s.work as Generation).prepareMask())) : null;
    const maskMs = maskWaitMs + (masking ? await masking.then(() => performance.now() - t1) : 0);
    let result: StepResult;
    try {
      result = await running;
    } catch (err) {
      // What the step was to write (new KV, copies into fresh pages) may not be there: its contexts give their
      // pages back and compute again when next used (`settled` keeps their holders' view). A driver that went
      // down (its worker died) starts again over the same KV pool, so every other context keeps its state, and
      // this step's work runs again: a work whose step fails this way twice in a row fails. A failed run of a driver still up (or one
      // that could not start again) fails this step's work; later steps fail as they come.
      for (const s of planned) if (!s.work.ctx.released) this.kv.drop(s.work.ctx);
      let restarted = false;
      if (!this.driverDown) {
        const r = await this.driver.recover?.().catch(() => null);
        if (r) this.numDriverRestarts++;
        else if (r === null) this.driverDown = true; // it tried and could not: no retry on every step
        restarted = r === true;
      }
      // Last first: each goes to the front of the line, so they keep their order.
      for (const s of [...planned].reverse()) {
        // A work cancelled while the step ran may have been followed by another on its context: that one stays.
        if (this.active.get(s.work.ctx) !== s.work) continue;
        if (restarted && !this.rerun.has(s.work)) {
          this.rerun.add(s.work);
          this.scheduler.requeue(s.work);
        } else this.cancelWork(s.work, err as Error);
      }
      return;
    }
    const t2 = performance.now();
    this.numSteps++;
    for (const s of planned) this.rerun.delete(s.work); // it got through a step: a later crash may run it again
    const drawn = this.deliver(planned, result, batch.head?.fullRows ?? new Int32Array(0));
    const t3 = performance.now();
    this.numHeadRows += drawn.head;
    this.numFullRows += drawn.full;
    const stats: StepStats = {
      rows: planned.length,
      tokens: batch.numTokens,
      sampled: batch.sampleIndex.length,
      driverMs: t2 - t1,
      scheduleMs: t1 - t0 - maskWaitMs,
      sampleMs: t3 - t2,
      constrained: constrained.length,
      maskMs,
      maskWaitMs,
      headRows: drawn.head,
      fullRows: drawn.full,
      undecided: drawn.undecided,
    };
    for (const listener of this.stepListeners) {
      try {
        listener(stats);
      } catch {
        // A listener's failure is its own: the step's work has its results already.
      }
    }
  }

  /** How a scheduled work's sampled rows are drawn: what comes back for them, their temperature, their mask in the graph, their head inputs. */
  private rowSampling(work: Work, vocab: number): RowSampling {
    const g = work instanceof Generation ? work : null;
    return {
      needs: work.needs,
      invTemperature: work.invTemperature,
      // A row drawn under a mask this step (prepared above) carries it: null if computing it failed (it fails on delivery).
      ...(g?.maskInGraph && g.isConstrained ? { mask: g.preparedMask } : {}),
      ...(work.needs === 'head' && g ? { head: ((h) => ({ ...h, full: h.full || !this.samplingHead }))(g.headInputs(vocab, HEAD_DRAWS)) } : {}),
    };
  }

  /** Hands each work its rows; returns how many tokens were drawn by the sampling head and from full distributions, and how many rows the head could not decide (run again next step). */
  private deliver(planned: Scheduled[], result: StepResult, fullRows: Int32Array): { head: number; full: number; undecided: number } {
    const drawn = { head: 0, full: 0, undecided: 0 };
    const V = this.driver.info.vocabSize;
    const { logits, best, bestLogprob } = result;
    // Full distributions come for the rows the batch listed, in that order.
    const fullRow = new Map<number, Float32Array>();
    fullRows.forEach((r, i) => fullRow.set(r, result.probs!.subarray(i * V, (i + 1) * V)));
    let row = 0;
    for (const s of planned) {
      const { work } = s;
      const ctx = work.ctx;
      if (s.numTokens === 1 && s.plan.start > 0 && work instanceof Generation) this.numDecodeTokensComputed++;
      else this.numPromptTokensComputed += s.numTokens;
      const rows: SampledRow[] = [];
      for (let i = 0; i < s.numSample; i++, row++) {
        const head = work.needs === 'head' && result.head ? headRow(result.head, row, V) : null;
        rows.push({ logits: work.needs === 'logits' && logits ? logits.subarray(row * V, (row + 1) * V) : null, probs: fullRow.get(row) ?? null, head, best: best[row]!, bestLogprob: bestLogprob[row]! });
      }
      if (ctx.released || this.active.get(ctx) !== work) continue;
      this.kv.advance(ctx, s.plan.upTo);
      if (work instanceof ForwardWork) {
        rows.forEach((r, i) => work.take(s.plan.upTo - s.numSample + i, r.logits!));
        if (ctx.numPending === 0) {
          this.finishWork(work);
          work.complete();
        }
      } else if (work instanceof Generation && ctx.numPending === 0) {
        try {
          if (work.deliver(rows[0]!) === 'again') {
            // Its token is computed again next step (same KV, same uniforms), with the full distribution.
            this.kv.rewindOne(ctx);
            drawn.undecided++;
          } else if (work.drawnFrom) drawn[work.drawnFrom]++;
        } catch (err) {
          // A grammar that fails, or a fully masked row: this generation fails, the others go on.
          this.cancelWork(work, err as Error);
        }
      }
    }
    return drawn;
  }

  /** A snapshot of the engine's counters, for metrics and tests. */
  stats(): EngineStats {
    const pool = this.kv.pool;
    const cache = this.kv.prefixCache;
    const g = this.grammarsOf?.stats(); // not made just to be asked
    return {
      pages: { total: pool.numPages, free: pool.numFree, cached: pool.numCached, inUse: pool.numInUse, pageSize: pool.pageSize },
      prefixCache: {
        hits: cache.numHits,
        misses: cache.numMisses,
        entries: cache.numEntries,
        queryTokens: this.scheduler.numPrefixQueryTokens,
        hitTokens: this.scheduler.numPrefixHitTokens,
      },
      running: this.scheduler.running.length,
      waiting: this.scheduler.waiting.length,
      contexts: this.contexts.size,
      snapshots: this.snapshots.size,
      steps: this.numSteps,
      preemptions: this.scheduler.numPreemptions,
      promptTokensComputed: this.numPromptTokensComputed,
      decodeTokensComputed: this.numDecodeTokensComputed,
      grammar: { constrained: this.numConstrainedGenerations, compiled: g?.compiled ?? 0, cacheHits: g?.cacheHits ?? 0, refused: g?.refused ?? 0, matchers: g?.matchers ?? 0 },
      sampling: { headRows: this.numHeadRows, fullRows: this.numFullRows },
    };
  }

  /**
   * The first waiting work cannot get pages even after everything
   * reclaimable was reclaimed: if it could never fit it fails at once
   * (kv_cache_exhausted), else once the queueing time has passed
   * (kv_cache_full: the server is overloaded). True when it failed.
   */
  private failStuck(): boolean {
    const head = this.scheduler.waiting[0];
    if (!head) return false;
    const needed = Math.ceil(head.ctx.length / this.kv.pageSize);
    if (needed > this.kv.pool.numPages) {
      this.cancelWork(head, errors.kvExhausted(needed, this.kv.pool.numPages, this.kv.pool.numInUse));
      return true;
    }
    const now = performance.now();
    const since = this.stuckSince.get(head) ?? now;
    this.stuckSince.set(head, since);
    if (now - since < this.queueTimeoutMs) return false;
    this.cancelWork(head, errors.kvCacheFull(needed, now - since));
    return true;
  }

  /**
   * Gives back the pages of the least recently used idle context whose
   * pages are its own alone (a finished fork whose siblings still run, a
   * context a guest keeps for later): its tokens stay and are computed again
   * when it is next used. Contexts whose KV came from a custom attention rule
   * are never dropped (a plain recompute would differ). False when none would free a page.
   */
  private evictIdleContext(): boolean {
    const idle = (ctx: Context) => !ctx.busy && !ctx.released && !ctx.customKv && ctx.pageTable.length > 0;
    let best: Context | null = null;
    for (const ctx of this.contexts.values()) {
      if (!idle(ctx) || (best && ctx.lastUsedAt >= best.lastUsedAt)) continue;
      if (this.kv.wouldFree(ctx)) best = ctx;
    }
    if (best) {
      this.kv.drop(best);
      return true;
    }
    return this.evictIdleGroup(idle);
  }

  /**
   * When no idle context frees a page alone (an idle root and its idle fork,
   * a context and the snapshot it saved share every page): the least recently
   * used idle context with every other holder of its pages, if they are all
   * idle contexts or snapshots, go together. A group with running work, or a
   * custom-attention context, stays.
   */
  private evictIdleGroup(idle: (ctx: Context) => boolean): boolean {
    const snapshots = new Set(this.snapshots.contexts());
    const holders = new Map<number, Context[]>();
    for (const c of [...this.contexts.values(), ...snapshots]) {
      for (const p of c.pageTable) {
        const list = holders.get(p);
        if (list) list.push(c);
        else holders.set(p, [c]);
      }
    }
    const candidates = [...this.contexts.values()].filter(idle).sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    for (const start of candidates) {
      const group = new Set<Context>([start]);
      const queue = [start];
      let evictable = true;
      while (evictable && queue.length > 0) {
        for (const p of queue.pop()!.pageTable) {
          for (const h of holders.get(p) ?? []) {
            if (group.has(h)) continue;
            if (!snapshots.has(h) && !idle(h)) evictable = false;
            group.add(h);
            queue.push(h);
          }
        }
      }
      if (!evictable) continue;
      for (const c of group) {
        if (snapshots.has(c)) this.snapshots.evictContext(c, 'the KV cache needed its pages for running work');
        else this.kv.drop(c);
      }
      return true;
    }
    return false;
  }

  private cancelWork(work: Work, err: Error): void {
    this.finishWork(work);
    if (work instanceof ForwardWork) work.reject(err);
    else if (work instanceof Generation) work.finish(err.name === 'EngineError' && (err as errors.EngineError).code === 'context_released' ? 'cancelled' : 'error', null, err);
  }

  private finishWork(work: Work): void {
    this.scheduler.remove(work);
    if (this.active.get(work.ctx) === work) this.active.delete(work.ctx);
    work.ctx.busy = false;
    work.ctx.lastUsedAt = performance.now();
    work.ctx.settled = Math.max(work.ctx.settled, work.ctx.numComputed);
  }

  private newContext(tenant: string, tracked: boolean): Context {
    const ctx = new Context(this.nextContextId++, tenant);
    if (tracked) this.contexts.set(ctx.id, ctx);
    return ctx;
  }

  private checkAlive(ctx: Context): void {
    if (ctx.released) throw errors.contextReleased(ctx.id);
  }

  /** A step needs at least one pending token to produce logits; recompute the last one if all are done. */
  private ensurePending(ctx: Context): void {
    if (ctx.length === 0) throw new errors.EngineError('empty_context', `context ${ctx.id} is empty: append tokens first`);
    if (ctx.numPending === 0) this.kv.rewindOne(ctx);
  }

  private checkIdle(ctx: Context): void {
    this.checkAlive(ctx);
    if (ctx.busy) throw errors.contextBusy(ctx.id);
  }
}

/** A token's log-probability in a row of logits, its rank (1: the most likely), and the row's `top` most likely tokens. */
function scoreToken(logits: Float32Array, token: number, top: number): ScoredToken {
  const lse = logSumExp(logits);
  const x = logits[token]!;
  let rank = 0; // as vLLM counts it: tokens at least as likely, itself included
  for (let i = 0; i < logits.length; i++) if (logits[i]! >= x) rank++;
  return { token, logprob: x - lse, rank, top: top > 0 ? topK(logits, top).map((t) => ({ token: t, logprob: logits[t]! - lse })) : [] };
}
