import { describe, expect, it } from 'vitest';
import { hashBehaviour } from '../../drivers/mock/driver.ts';
import { mockEngine } from '../../test/helpers.ts';
import type { Engine } from './engine.ts';

const VOCAB = 512;
const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 37 + seed * 11) % VOCAB);

/** What the mock model answers, computed without the engine. */
function expected(p: number[], n: number): number[] {
  const next = hashBehaviour(VOCAB);
  const seq = [...p];
  const out: number[] = [];
  for (let i = 0; i < n; i++) seq.push(next(seq)), out.push(seq[seq.length - 1]!);
  return out;
}

/** A greedy generation on a context of `tenant`, released after. */
async function run(engine: Engine, tenant: string, p: number[], maxTokens: number) {
  const ctx = engine.createContext(tenant);
  try {
    engine.append(ctx, p);
    return await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens, ignoreEos: true }).result;
  } finally {
    engine.release(ctx);
  }
}

/** After each step: the distinct pages each tenant's running work holds, and the pool's free pages. */
function recordHeld(engine: Engine): Array<{ held: Map<string, number>; free: number }> {
  const steps: Array<{ held: Map<string, number>; free: number }> = [];
  engine.addStepListener(() => {
    const pages = new Map<string, Set<number>>();
    for (const w of engine.scheduler.running) {
      const set = pages.get(w.ctx.tenant) ?? new Set<number>();
      for (const p of w.ctx.pageTable) set.add(p);
      pages.set(w.ctx.tenant, set);
    }
    steps.push({ held: new Map([...pages].map(([t, s]) => [t, s.size])), free: engine.stats().pages.free });
  });
  return steps;
}

describe("tenants' shares of the KV pool", () => {
  // 64 pages of 4 tokens; each tenant runs 8 generations that grow to 8 pages each: 128 pages wanted.
  const contend = async (weights: Map<string, { weight: number }> | null) => {
    const { engine } = await mockEngine({ numPages: 64, pageSize: 4 });
    if (weights) engine.setTenantShares(weights);
    const steps = recordHeld(engine);
    const jobs = ['a', 'b'].flatMap((t, ti) => Array.from({ length: 8 }, (_, i) => ({ t, p: prompt(4, ti * 8 + i) })));
    const results = await Promise.all(jobs.map((j) => run(engine, j.t, j.p, 28)));
    results.forEach((r, i) => expect(r.tokens).toEqual(expected(jobs[i]!.p, 28)));
    // Steps where the pool was full and both tenants ran: what each held, summed.
    const contended = steps.filter((s) => s.free === 0 && s.held.has('a') && s.held.has('b'));
    expect(contended.length).toBeGreaterThan(10);
    const sum = (t: string) => contended.reduce((n, s) => n + s.held.get(t)!, 0);
    expect(engine.stats().pages.inUse).toBe(0);
    return { a: sum('a'), b: sum('b') };
  };

  it('under contention gives tenants of equal weight about equal pages, and a tenant of weight 3 about three times as many; everything completes unchanged', async () => {
    const equal = await contend(null);
    expect(equal.a / equal.b).toBeGreaterThan(0.6);
    expect(equal.a / equal.b).toBeLessThan(1.6);
    const weighted = await contend(new Map([['a', { weight: 3 }]]));
    expect(weighted.a / weighted.b).toBeGreaterThan(2);
  });

  it("keeps a tenant's running work within its page cap while other tenants' waiting work goes ahead of its held-back work", async () => {
    const { engine, driver } = await mockEngine({ numPages: 64, pageSize: 4 });
    engine.setTenantShares(new Map([['b', { maxPages: 4 }]]));
    const steps = recordHeld(engine);
    driver.recordBatches = true;
    // b's three 2-page prompts come first; only two fit under its cap, and a's prompt starts beside them.
    const jobs = [
      { t: 'b', p: prompt(8, 1) },
      { t: 'b', p: prompt(8, 2) },
      { t: 'b', p: prompt(8, 3) },
      { t: 'a', p: prompt(8, 4) },
    ];
    const results = await Promise.all(jobs.map((j) => run(engine, j.t, j.p, 8)));
    results.forEach((r, i) => expect(r.tokens).toEqual(expected(jobs[i]!.p, 8)));
    expect(driver.batches[0]!.sampleIndex.length).toBe(3);
    expect(Math.max(...steps.map((s) => s.held.get('b') ?? 0))).toBe(4);
    expect(engine.scheduler.numPreemptions).toBeGreaterThan(0); // b's growing work gave way to b's own
    expect(engine.stats().pages.inUse).toBe(0);
  });

  it("counts the private copy of a shared last page against the cap: forks of a running context stay within their tenant's pages", async () => {
    const { engine } = await mockEngine({ numPages: 64, pageSize: 4, stepDelayMs: 2 });
    engine.setTenantShares(new Map([['b', { maxPages: 3 }]]));
    const steps = recordHeld(engine);
    const p = prompt(5, 5);
    const root = engine.createContext('b');
    engine.append(root, p);
    const rootGen = engine.generate(root, { sampling: { temperature: 0 }, maxTokens: 6, ignoreEos: true });
    // Forked while the root runs, when its last page is partial: each fork copies that page before writing to it,
    // while the root keeps the original.
    while (root.length < 7) await new Promise((r) => setTimeout(r, 1));
    const forks = [engine.fork(root), engine.fork(root)];
    const forkPrompts = forks.map((f) => [...f.tokens]);
    const forkGens = forks.map((f) => engine.generate(f, { sampling: { temperature: 0 }, maxTokens: 2, ignoreEos: true }).result);
    expect((await rootGen.result).tokens).toEqual(expected(p, 6));
    (await Promise.all(forkGens)).forEach((r, i) => expect(r.tokens).toEqual(expected(forkPrompts[i]!, 2)));
    for (const c of [root, ...forks]) engine.release(c);
    expect(engine.stats().pages.inUse).toBe(0);
  });

  it('preempts nobody for fairness while the pool has room: work held back by its own cap is no shortage', async () => {
    const { engine } = await mockEngine({ numPages: 64, pageSize: 4 });
    engine.setTenantShares(new Map([['s', { maxPages: 8 }]]));
    // s: one generation that grows to its 8-page cap, and a second one its cap holds back meanwhile;
    // b: four that grow from 8 to 12 pages each, 48 of the 64 pages (more than half the pool, with room to spare).
    const capped = [run(engine, 's', prompt(13, 1), 19), run(engine, 's', prompt(20, 2), 4)];
    const grown = [1, 2, 3, 4].map((i) => run(engine, 'b', prompt(32, 10 + i), 16));
    const results = await Promise.all([...capped, ...grown]);
    results.slice(2).forEach((r, i) => expect(r.tokens).toEqual(expected(prompt(32, 11 + i), 16)));
    expect(engine.scheduler.numPreemptions).toBe(0);
    expect(engine.stats().pages.inUse).toBe(0);
  });

  it('refuses a prompt that could never fit under its tenant cap, and ends a generation with "length" where its context would pass it', async () => {
    const { engine } = await mockEngine({ numPages: 64, pageSize: 4 });
    engine.setTenantShares(new Map([['b', { maxPages: 2 }]]));
    const big = engine.createContext('b');
    engine.append(big, prompt(12, 1));
    expect(() => engine.generate(big, { maxTokens: 1 })).toThrow(/needs 3 pages, and this tenant's running work may hold at most 2/);
    await expect(engine.forward(big)).rejects.toThrow(/at most 2/);
    engine.release(big);
    const r = await run(engine, 'b', prompt(5, 2), 100);
    expect(r.finishReason).toBe('length');
    expect(r.completionTokens).toBe(3); // 8 tokens: two pages
    expect((await run(engine, 'a', prompt(12, 1), 4)).completionTokens).toBe(4); // other tenants are not capped
  });

  it('fails waiting work whose tenant cap was lowered under it, and nothing else', async () => {
    const { engine } = await mockEngine({ numPages: 64, pageSize: 4 });
    const ctx = engine.createContext('b');
    engine.append(ctx, prompt(12, 1));
    const gen = engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 4, ignoreEos: true });
    const other = run(engine, 'a', prompt(12, 2), 4);
    engine.setTenantShares(new Map([['b', { maxPages: 2 }]]));
    const r = await gen.result;
    expect(r.finishReason).toBe('error');
    expect(r.error?.message).toMatch(/at most 2/);
    expect((await other).tokens).toEqual(expected(prompt(12, 2), 4));
    engine.release(ctx);
    expect(engine.stats().pages.inUse).toBe(0);
  });

  it('rejects weights and caps that mean nothing', async () => {
    const { engine } = await mockEngine();
    expect(() => engine.setTenantShares(new Map([['a', { weight: 0 }]]))).toThrow(/positive/);
    expect(() => engine.setTenantShares(new Map([['a', { maxPages: 0 }]]))).toThrow(/at least 1/);
  });
});
