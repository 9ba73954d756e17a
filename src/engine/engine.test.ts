import { describe, expect, it } from 'vitest';
import { hashBehaviour } from '../../drivers/mock/driver.ts';
import { greedy, mockEngine, randomModelDir, testEngine } from '../../test/helpers.ts';
import type { Engine } from './engine.ts';
import { HEAD_DRAWS } from './sampling.ts';
import { EngineError } from './errors.ts';
import type { SamplingParams } from './sampler.ts';

const VOCAB = 512;
/** What the mock model answers, computed without the engine. */
function expected(prompt: number[], n: number): number[] {
  const next = hashBehaviour(VOCAB);
  const seq = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = next(seq);
    seq.push(t);
    out.push(t);
  }
  return out;
}

const prompt = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 37 + seed * 11) % VOCAB);

describe('Engine on the mock driver', () => {
  it('generates what the model says, token by token', async () => {
    const { engine } = await mockEngine();
    const r = await greedy(engine, prompt(10, 1), 20);
    expect(r.tokens).toEqual(expected(prompt(10, 1), 20));
    expect(r.finishReason).toBe('length');
    expect(r.promptTokens).toBe(10);
    expect(r.completionTokens).toBe(20);
  });

  it('starts work submitted together in the same step: 8 generations of 5 tokens take 5 steps', async () => {
    const { engine } = await mockEngine({ numPages: 64 });
    const ctxs = Array.from({ length: 8 }, (_, i) => {
      const c = engine.createContext();
      engine.append(c, prompt(5, i));
      return c;
    });
    const before = engine.numSteps;
    await Promise.all(ctxs.map((c) => engine.generate(c, { sampling: { temperature: 0 }, maxTokens: 5, ignoreEos: true }).result));
    expect(engine.numSteps - before).toBe(5);
    for (const c of ctxs) engine.release(c);
  });

  it('gives each of 16 concurrent generations exactly what it gets alone', async () => {
    const { engine, driver } = await mockEngine({ numPages: 256 });
    driver.recordBatches = true;
    const prompts = Array.from({ length: 16 }, (_, i) => prompt(3 + i * 5, i));
    const results = await Promise.all(prompts.map((p, i) => greedy(engine, p, 10 + i)));
    results.forEach((r, i) => expect(r.tokens).toEqual(expected(prompts[i]!, 10 + i)));
    expect(Math.max(...driver.batches.map((b) => b.sampleIndex.length))).toBe(16);
  });

  it('prefills a long prompt in chunks without stalling running decodes', async () => {
    const { engine, driver } = await mockEngine({ numPages: 128, maxTokensPerStep: 8, stepDelayMs: 1 });
    const running = [greedy(engine, prompt(3, 1), 60), greedy(engine, prompt(4, 2), 60)];
    while (engine.numSteps < 3) await new Promise((r) => setTimeout(r, 1));
    driver.recordBatches = true;
    const long = greedy(engine, prompt(100, 3), 5);
    const [a, b, c] = await Promise.all([...running, long]);
    expect(a!.tokens).toEqual(expected(prompt(3, 1), 60));
    expect(b!.tokens).toEqual(expected(prompt(4, 2), 60));
    expect(c!.tokens).toEqual(expected(prompt(100, 3), 5));
    // While the long prompt was being prefilled, both decodes ran in every step.
    const prefillSteps = driver.batches.filter((bt) => bt.numTokens > bt.sampleIndex.length);
    expect(prefillSteps.length).toBeGreaterThan(10);
    for (const bt of prefillSteps.slice(0, 10)) {
      expect(bt.sampleIndex.length).toBe(2);
      expect(bt.numTokens).toBeLessThanOrEqual(8);
    }
  });

  it('preempts and recomputes when pages run out, losing nothing', async () => {
    const { engine } = await mockEngine({ numPages: 12, pageSize: 4 });
    const prompts = Array.from({ length: 4 }, (_, i) => prompt(6, i));
    const results = await Promise.all(prompts.map((p) => greedy(engine, p, 12)));
    results.forEach((r, i) => expect(r.tokens).toEqual(expected(prompts[i]!, 12)));
    expect(engine.scheduler.numPreemptions).toBeGreaterThan(0);
  });

  it('fails a request larger than the whole pool with a clear error', async () => {
    const { engine } = await mockEngine({ numPages: 4, pageSize: 4 });
    const ctx = engine.createContext();
    engine.append(ctx, prompt(30, 1));
    expect(() => engine.generate(ctx, { maxTokens: 1 })).toThrow(/needs 8 pages, the pool has 4/);
    engine.release(ctx);
  });

  it('takes back the pages of an idle context when a request needs them; the idle context computes its tokens again when next used', async () => {
    const { engine } = await mockEngine({ numPages: 4, pageSize: 4 });
    const holder = engine.createContext();
    engine.append(holder, prompt(12, 1));
    const before = (await engine.forward(holder)).logits[0]!;
    const ctx = engine.createContext();
    engine.append(ctx, prompt(8, 2));
    const r = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 4, ignoreEos: true }).result; // greedy: sampled, it could end early
    expect(r.finishReason).toBe('length');
    expect(holder.numComputed).toBe(0); // its pages went to the request
    expect(holder.numUnsettled).toBe(0); // as its holder sees it, nothing is pending: row numbers mean what they meant
    engine.release(ctx);
    expect((await engine.forward(holder)).logits[0]).toEqual(before);
    // Scores after the eviction cover only the tokens appended since, as they would have.
    const twin = engine.createContext();
    engine.append(twin, prompt(12, 1));
    await engine.forward(twin);
    engine.kv.drop(holder); // given back again
    engine.append(holder, [7, 8]);
    engine.append(twin, [7, 8]);
    const scored = await engine.promptLogprobs(holder, 1);
    expect(scored).toHaveLength(2);
    expect(scored).toEqual(await engine.promptLogprobs(twin, 1));
    engine.release(twin);
    engine.release(holder);
  });

  it('gives back pages that idle holders share (a root, its fork and its snapshot) together when no one of them would free any alone', async () => {
    const { engine } = await mockEngine({ numPages: 8, pageSize: 4, queueTimeoutMs: 300, snapshotPagesPerTenant: 8 });
    const root = engine.createContext();
    engine.append(root, prompt(16, 1));
    const before = (await engine.forward(root)).logits[0]!;
    const fork = engine.fork(root);
    engine.saveSnapshot(root, 'kept');
    expect(engine.kv.pool.numInUse).toBe(4); // every page held three times
    const ctx = engine.createContext();
    engine.append(ctx, prompt(20, 2)); // 6 pages with its output: more than the 4 left
    const r = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 4, ignoreEos: true }).result;
    expect(r.finishReason).toBe('length');
    expect(() => engine.openSnapshot('kept')).toThrow(/was evicted \(the KV cache needed its pages/);
    engine.release(ctx);
    expect((await engine.forward(root)).logits[0]).toEqual(before); // computed again
    engine.release(root);
    engine.release(fork);
  });

  it('lets work wait for room, then fails it as overloaded (kv_cache_full) after the queueing time; work that could never fit fails at once', async () => {
    const { engine } = await mockEngine({ numPages: 4, pageSize: 4, queueTimeoutMs: 100 });
    // An idle context whose KV came from a custom attention rule cannot be recomputed: its pages stay.
    const holder = engine.createContext();
    engine.append(holder, prompt(12, 1));
    await engine.forward(holder, { attend: (pos, key) => key <= pos });
    const ctx = engine.createContext();
    engine.append(ctx, prompt(8, 2));
    const t0 = performance.now();
    const r = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 4, ignoreEos: true }).result; // greedy: sampled, it could end early
    expect(r.finishReason).toBe('error');
    expect((r.error as EngineError).code).toBe('kv_cache_full');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(90); // it waited
    const huge = engine.createContext();
    engine.append(huge, prompt(20, 3)); // 5 pages: more than the pool
    expect(() => engine.generate(huge, { maxTokens: 1 })).toThrow(/not enough KV cache/);
    for (const c of [holder, ctx, huge]) engine.release(c);
  });

  it('forks a context: shared prefix, independent continuations', async () => {
    const { engine, driver } = await mockEngine();
    driver.recordBatches = true;
    const parent = engine.createContext();
    engine.append(parent, prompt(6, 4));
    await engine.forward(parent);
    const kids = [engine.fork(parent), engine.fork(parent)];
    engine.append(kids[0]!, [5]);
    engine.append(kids[1]!, [9]);
    const gens = await Promise.all(kids.map((k) => engine.generate(k, { sampling: { temperature: 0 }, maxTokens: 6 }).result));
    expect(gens[0]!.tokens).toEqual(expected([...prompt(6, 4), 5], 6));
    expect(gens[1]!.tokens).toEqual(expected([...prompt(6, 4), 9], 6));
    expect(kids[0]!.pageTable[0]).toBe(parent.pageTable[0]);
    expect(driver.batches.some((b) => b.copies && b.copies.from.length > 0)).toBe(true);
    for (const c of [parent, ...kids]) engine.release(c);
  });

  it('truncates a context and continues as if the dropped tokens never were', async () => {
    const { engine } = await mockEngine();
    const ctx = engine.createContext();
    engine.append(ctx, prompt(9, 5));
    await engine.generate(ctx, { maxTokens: 7 }).result;
    engine.truncate(ctx, 9);
    const again = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 7 }).result;
    expect(again.tokens).toEqual(expected(prompt(9, 5), 7));
    engine.release(ctx);
  });

  it('keeps named snapshots beyond their context, per tenant, until deleted', async () => {
    const { engine } = await mockEngine();
    const ctx = engine.createContext('acme');
    engine.append(ctx, prompt(10, 6));
    await engine.forward(ctx);
    engine.saveSnapshot(ctx, 'system');
    engine.release(ctx);
    expect(engine.listSnapshots('acme')).toEqual(['system']);
    expect(engine.listSnapshots('other')).toEqual([]);
    expect(engine.kv.pool.numInUse).toBeGreaterThan(0);
    expect(() => engine.openSnapshot('system', 'other')).toThrow(/no snapshot named "system"/);
    const opened = engine.openSnapshot('system', 'acme');
    expect(opened.numComputed).toBe(10);
    engine.append(opened, [3]);
    const r = await engine.generate(opened, { sampling: { temperature: 0 }, maxTokens: 4 }).result;
    expect(r.tokens).toEqual(expected([...prompt(10, 6), 3], 4));
    engine.release(opened);
    expect(engine.deleteSnapshot('system', 'acme')).toBe(true);
    expect(engine.deleteSnapshot('system', 'acme')).toBe(false);
  });

  it('asks its reclaim hook for pages held by snapshots before refusing work that needs them', async () => {
    const { engine } = await mockEngine({ numPages: 16, pageSize: 4, snapshotPagesPerTenant: 16 });
    const ctx = engine.createContext();
    engine.append(ctx, prompt(40, 3));
    await engine.forward(ctx);
    engine.saveSnapshot(ctx, 'cache');
    engine.release(ctx);
    expect(engine.kv.pool.numInUse).toBe(10);
    let asked = 0;
    engine.addReclaimer(() => (asked++, engine.deleteSnapshot('cache')));
    const r = await greedy(engine, prompt(30, 4), 20); // 50 tokens: 13 of the 16 pages
    expect(r.tokens).toEqual(expected(prompt(30, 4), 20));
    expect(asked).toBeGreaterThan(0);
    expect(engine.listSnapshots()).toEqual([]);
  });

  it('evicts the least recently used snapshot when running work needs its pages, and says so to whoever opens it', async () => {
    const { engine } = await mockEngine({ numPages: 16, pageSize: 4, snapshotPagesPerTenant: 16 });
    const save = async (name: string, seed: number) => {
      const ctx = engine.createContext('hoarder');
      engine.append(ctx, prompt(20, seed));
      await engine.forward(ctx);
      engine.saveSnapshot(ctx, name);
      engine.release(ctx);
    };
    await save('old', 1);
    await save('new', 2);
    engine.release(engine.openSnapshot('old', 'hoarder')); // used again: now 'new' is the least recently used
    expect(engine.kv.pool.numInUse).toBe(10);
    const r = await greedy(engine, prompt(30, 4), 20); // 50 tokens: 13 of the 16 pages
    expect(r.tokens).toEqual(expected(prompt(30, 4), 20));
    expect(() => engine.openSnapshot('new', 'hoarder')).toThrow(/the snapshot "new" was evicted \(the KV cache needed its pages/);
    expect(engine.listSnapshots('hoarder')).not.toContain('new');
    for (const name of engine.listSnapshots('hoarder')) engine.deleteSnapshot(name, 'hoarder');
  });

  it("keeps a tenant's snapshots within its page quota: the least recently used go first; one alone past it is refused", async () => {
    const { engine } = await mockEngine({ numPages: 32, pageSize: 4, snapshotPagesPerTenant: 6 });
    const save = async (tenant: string, name: string, tokens: number) => {
      const ctx = engine.createContext(tenant);
      try {
        engine.append(ctx, prompt(tokens, name.length + tokens));
        await engine.forward(ctx);
        engine.saveSnapshot(ctx, name);
      } finally {
        engine.release(ctx);
      }
    };
    await save('t', 'a', 12); // 3 pages
    await save('t', 'bb', 12);
    await save('other', 'x', 12);
    await save('t', 'ccc', 12); // 9 pages for t: 'a' goes
    expect(engine.listSnapshots('t').sort()).toEqual(['bb', 'ccc']);
    expect(() => engine.openSnapshot('a', 't')).toThrow(/passed their quota of 6 KV pages/);
    expect(engine.listSnapshots('other')).toEqual(['x']);
    await expect(save('t', 'huge', 28)).rejects.toMatchObject({ code: 'snapshot_quota_exceeded' });
    expect(engine.listSnapshots('t').sort()).toEqual(['bb', 'ccc']); // a refused save takes nothing away
    for (const [t, n] of [['t', 'bb'], ['t', 'ccc'], ['other', 'x']]) engine.deleteSnapshot(n!, t!);
  });

  it('returns the logits of the last n pending tokens from forward()', async () => {
    const { engine } = await mockEngine({ maxTokensPerStep: 4 });
    const ctx = engine.createContext();
    const p = prompt(10, 7);
    engine.append(ctx, p);
    const { logits } = await engine.forward(ctx, { numLogits: 6 });
    expect(logits).toHaveLength(6);
    const next = hashBehaviour(VOCAB);
    logits.forEach((row, i) => {
      let best = 0;
      for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
      expect(best).toBe(next(p.slice(0, 5 + i)));
    });
    engine.append(ctx, [1]);
    const s = await engine.forward(ctx, { sampling: { temperature: 0, logprobs: 2 } });
    expect(s.sample!.token).toBe(next([...p, 1]));
    expect(s.sample!.top).toHaveLength(2);
    engine.release(ctx);
  });

  it('cancels a generation through its AbortSignal and on release', async () => {
    const { engine } = await mockEngine({ stepDelayMs: 2 });
    const ctx = engine.createContext();
    engine.append(ctx, prompt(5, 8));
    const ac = new AbortController();
    const gen = engine.generate(ctx, { maxTokens: 1000, ignoreEos: true, signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    const r = await gen.result;
    expect(r.finishReason).toBe('cancelled');
    expect(r.completionTokens).toBeLessThan(1000);
    const ctx2 = engine.createContext();
    engine.append(ctx2, prompt(5, 9));
    const gen2 = engine.generate(ctx2, { maxTokens: 1000, ignoreEos: true });
    setTimeout(() => engine.release(ctx2), 10);
    expect((await gen2.result).finishReason).toBe('cancelled');
    engine.release(ctx);
  });

  it('takes a prompt of 150,000 tokens (no call-stack limits on long contexts)', async () => {
    const { engine } = await mockEngine({ numPages: 40_000, pageSize: 4 });
    const long = Array.from({ length: 150_000 }, (_, i) => i % VOCAB);
    engine.model.config.maxPositionEmbeddings = 200_000;
    const ctx = engine.createContext();
    engine.append(ctx, long);
    const fork = engine.fork(ctx);
    expect(fork.length).toBe(150_000);
    engine.release(fork);
    engine.release(ctx);
  });

  it('rejects bad input with errors that name it', async () => {
    const { engine } = await mockEngine();
    const ctx = engine.createContext();
    expect(() => engine.append(ctx, [VOCAB])).toThrow(/token id 512 is outside the vocabulary/);
    expect(() => engine.append(ctx, [1.5])).toThrow(/outside the vocabulary/);
    expect(() => engine.append(ctx, new Array(5000).fill(1))).toThrow(/at most 2048/);
    await expect(engine.forward(ctx)).rejects.toThrow(/is empty/);
    engine.append(ctx, [1, 2]);
    const gen = engine.generate(ctx, { maxTokens: 3 });
    expect(() => engine.append(ctx, [3])).toThrow(/already running/);
    await gen.result;
    engine.release(ctx);
    expect(() => engine.append(ctx, [3])).toThrow(/has been released/);
  });

  it('stops at the model\'s EOS token without putting it in the text', async () => {
    const { engine } = await mockEngine({ behaviour: (visible) => (visible.length >= 8 ? 2 : 300 + visible.length) });
    const ctx = engine.createContext();
    engine.append(ctx, [1, 5, 6]);
    const r = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 50 }).result;
    expect(r.tokens).toEqual([303, 304, 305, 306, 307, 2]);
    expect(r.finishReason).toBe('stop');
    expect(r.stopReason).toBe(2);
    expect(r.text).toBe(engine.model.tokenizer.decode([303, 304, 305, 306, 307]));
    engine.release(ctx);
  });

  it('fails only the generation whose grammar fails, and counts what it did', async () => {
    const { engine } = await mockEngine();
    const bad = engine.createContext();
    const good = engine.createContext();
    engine.append(bad, prompt(5, 11));
    engine.append(good, prompt(5, 12));
    const matcher = await engine.grammars.matcher(await engine.grammars.compile({ type: 'regex', pattern: '[^\\n]*' }));
    let chunks = 0;
    const onChunk = () => {
      if (++chunks === 2) matcher.dispose(); // its next mask fails
    };
    const [b, g] = await Promise.all([
      engine.generate(bad, { maxTokens: 5, ignoreEos: true, sampling: { seed: 1 }, grammar: matcher, onChunk }).result,
      engine.generate(good, { sampling: { temperature: 0 }, maxTokens: 5, ignoreEos: true }).result,
    ]);
    expect(b.finishReason).toBe('error');
    expect(b.error!.message).toBe('the grammar matcher was released');
    expect(b.completionTokens).toBe(2);
    expect(g.tokens).toEqual(expected(prompt(5, 12), 5));
    const stats = engine.stats();
    expect(stats.contexts).toBe(2);
    expect(stats.running + stats.waiting).toBe(0);
    expect(stats.pages.inUse).toBeGreaterThan(0);
    expect(stats.pages.free + stats.pages.cached + stats.pages.inUse).toBe(stats.pages.total);
    engine.release(bad);
    engine.release(good);
    expect(engine.stats().pages.inUse).toBe(0);
  });

  it('applies penalties over what the generation has produced', async () => {
    const { engine } = await mockEngine({ behaviour: () => 300 });
    const run = async (sampling: SamplingParams) => {
      const ctx = engine.createContext();
      engine.append(ctx, [1, 2]);
      const r = await engine.generate(ctx, { sampling, maxTokens: 4, ignoreEos: true }).result;
      engine.release(ctx);
      return r.tokens;
    };
    expect(await run({ temperature: 0 })).toEqual([300, 300, 300, 300]);
    // The mock's logits fall by 0.5 per id after 300. A frequency penalty of 0.8 per use:
    // 300 (0) → 301 (-0.5 beats -0.8) → 300 (-0.8 beats -1 and -1.3) → 302 (-1 beats -1.3 and -1.6).
    expect(await run({ temperature: 0, frequencyPenalty: 0.8 })).toEqual([300, 301, 300, 302]);
    // The same through the driver's probabilities, at a temperature low enough to be all but greedy.
    expect(await run({ temperature: 0.01, frequencyPenalty: 0.8, seed: 1 })).toEqual([300, 301, 300, 302]);
  });

  it('streams chunks whose text adds up to the result', async () => {
    const { engine } = await mockEngine();
    const ctx = engine.createContext();
    engine.append(ctx, prompt(4, 10));
    const gen = engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 12, ignoreEos: true });
    let text = '';
    const tokens: number[] = [];
    for await (const c of gen) {
      text += c.text;
      tokens.push(...c.tokens);
    }
    const r = await gen.result;
    expect(text).toBe(r.text);
    expect(tokens).toEqual(r.tokens);
    expect(r.text).toBe(engine.model.tokenizer.decode(r.tokens));
    engine.release(ctx);
  });

  it('keeps KV computed under a custom attention mask out of the prefix cache, for it and its forks', async () => {
    const { engine } = await mockEngine();
    const tokens = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
    const masked = engine.createContext();
    engine.append(masked, tokens);
    const own = await engine.forward(masked, { attend: () => false }); // each token sees only itself
    const child = engine.fork(masked);
    engine.append(child, [17, 18, 19, 20, 21]);
    await engine.forward(child);
    const hitsBefore = engine.stats().prefixCache.hits;
    const plain = engine.createContext();
    engine.append(plain, tokens);
    const causal = await engine.forward(plain);
    expect(engine.stats().prefixCache.hits).toBe(hitsBefore); // nothing served from the masked pages
    expect(Array.from(causal.logits[0]!)).not.toEqual(Array.from(own.logits[0]!));
    const again = engine.createContext();
    engine.append(again, tokens);
    await engine.forward(again);
    expect(engine.stats().prefixCache.hits).toBeGreaterThan(hitsBefore); // causal pages are shared as usual
    for (const c of [masked, child, plain, again]) engine.release(c);
  });
});

describe('grammar-constrained generation', () => {
  const run = async (engine: Awaited<ReturnType<typeof mockEngine>>['engine'], options: Parameters<typeof greedy>[3], tokens = prompt(5, 3)) => {
    const ctx = engine.createContext();
    engine.append(ctx, tokens);
    const r = await engine.generate(ctx, { maxTokens: 20, ...options }).result;
    engine.release(ctx);
    return r;
  };

  it('samples at any temperature even where the allowed tokens are far below the best (the softmax sees the mask)', async () => {
    const { engine } = await mockEngine();
    const grammar = await engine.grammars.compile({ type: 'choice', choices: ['yes', 'yesyes'] });
    for (const [temperature, seed] of [[1, 3], [0.1, 4], [2, 5], [0.7, 6]] as const) {
      const r = await run(engine, { grammar, sampling: { temperature, seed, topP: 0.9 } });
      expect(r.finishReason, r.error?.message).toBe('stop');
      expect(['yes', 'yesyes']).toContain(r.text);
    }
  });

  it('without end tokens, ends only when nothing else may follow', async () => {
    const { engine } = await mockEngine();
    const both = await run(engine, { grammar: await engine.grammars.compile({ type: 'choice', choices: ['a', 'ab'] }), ignoreEos: true, sampling: { temperature: 0 } });
    expect(both.text).toBe('ab');
    expect(both.finishReason).toBe('stop');
    const open = await run(engine, { grammar: await engine.grammars.compile({ type: 'regex', pattern: '[a-z]*' }), ignoreEos: true, sampling: { temperature: 0 }, maxTokens: 5 });
    expect(open.finishReason).toBe('length');
    expect(open.tokens).toHaveLength(5);
    expect(open.text).toMatch(/^[a-z]+$/);
  });

  it("ends on the generation's stop tokens, not the matcher's, and advances the caller's matcher to its end", async () => {
    const { engine } = await mockEngine();
    const matcher = await engine.grammars.matcher(await engine.grammars.compile({ type: 'choice', choices: ['hi'] }));
    const stop = 1; // a special token: never text to the grammar
    const r = await run(engine, { grammar: matcher, stopTokenIds: [stop], sampling: { temperature: 0 } });
    expect(r.text).toBe('hi');
    expect(r.finishReason).toBe('stop');
    expect(r.stopReason).toBe(stop);
    expect(r.tokens.at(-1)).toBe(stop);
    expect(matcher.isTerminated).toBe(true);
    matcher.dispose();
  });

  it('keeps its grammar while it waits, even after the cache has let it go', async () => {
    const { engine } = await mockEngine({ maxRowsPerStep: 1, grammars: { cacheSize: 1 } });
    const busy = engine.createContext();
    engine.append(busy, prompt(4, 1));
    const hog = engine.generate(busy, { maxTokens: 100_000, ignoreEos: true, sampling: { temperature: 0 } });
    const ctx = engine.createContext();
    engine.append(ctx, prompt(5, 2));
    const waiting = engine.generate(ctx, { grammar: await engine.grammars.compile({ type: 'choice', choices: ['ok'] }), sampling: { temperature: 0 }, maxTokens: 10 });
    await engine.grammars.compile({ type: 'choice', choices: ['b'] });
    await engine.grammars.compile({ type: 'choice', choices: ['c'] }); // the first has left the cache
    hog.cancel();
    const r = await waiting.result;
    expect(r.error?.message).toBeUndefined();
    expect(r.text).toBe('ok');
    engine.release(ctx);
    engine.release(busy);
    expect(engine.grammars.stats().matchers).toBe(0);
  });
});

describe('grammar-constrained generation, edge cases', () => {
  it('leaves the KV cache right when a grammar is complete before its first token (a forked context)', async () => {
    const { engine } = await mockEngine();
    const matcher = await engine.grammars.matcher(await engine.grammars.compile({ type: 'choice', choices: ['a'] }));
    expect(matcher.accept(engine.model.tokenizer.tokenToId('a')!)).toBe(true);
    expect(matcher.acceptEnd()).toBe(true);
    const p = prompt(6, 9);
    const ctx = engine.createContext();
    engine.append(ctx, p);
    await engine.forward(ctx);
    const child = engine.fork(ctx);
    const done = await engine.generate(child, { grammar: matcher, stopTokenIds: [2], ignoreEos: false, sampling: { temperature: 0 } }).result;
    expect(done.finishReason).toBe('stop');
    expect(done.tokens).toEqual([2]); // the end token, at once
    const after = await engine.generate(child, { maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 } }).result;
    expect(after.tokens).toEqual(expected([...p, 2], 4));
    // Without end tokens nothing at all is generated, and the fork's copied page is still written.
    const child2 = engine.fork(ctx);
    const none = await engine.generate(child2, { grammar: matcher, ignoreEos: true, sampling: { temperature: 0 } }).result;
    expect(none.tokens).toEqual([]);
    expect((await engine.generate(child2, { maxTokens: 4, ignoreEos: true, sampling: { temperature: 0 } }).result).tokens).toEqual(expected(p, 4));
    matcher.dispose();
    engine.release(child2);
    engine.release(child);
    engine.release(ctx);
  });

  it('releases text held back for a stop string when the grammar completes', async () => {
    const { engine } = await mockEngine();
    const ctx = engine.createContext();
    engine.append(ctx, prompt(5, 1));
    const r = await engine.generate(ctx, { grammar: await engine.grammars.compile({ type: 'choice', choices: ['ab'] }), ignoreEos: true, stop: ['bc'], sampling: { temperature: 0 } }).result;
    expect(r.text).toBe('ab');
    engine.release(ctx);
  });

  it('never passes off text the grammar does not allow when a stop token is also text to it', async () => {
    let tilde = -1;
    const { engine } = await mockEngine({ behaviour: () => tilde });
    tilde = engine.model.tokenizer.tokenToId('~')!;
    for (const choices of [['~!'], ['!~!'], ['~']]) {
      const ctx = engine.createContext();
      engine.append(ctx, prompt(5, 2));
      const r = await engine.generate(ctx, { grammar: await engine.grammars.compile({ type: 'choice', choices }), stopTokenIds: [tilde], sampling: { temperature: 0 }, maxTokens: 10 }).result;
      if (r.finishReason === 'error') expect(r.error!.message).toMatch(/cannot go on/);
      else {
        expect(r.finishReason).toBe('stop');
        expect(choices).toContain(r.text);
      }
      engine.release(ctx);
    }
  });

  it('lets go of its grammar when the engine refuses the generation', async () => {
    const { engine } = await mockEngine({ numPages: 4, pageSize: 4 });
    const grammar = await engine.grammars.compile({ type: 'choice', choices: ['x'] });
    const ctx = engine.createContext();
    engine.append(ctx, prompt(40, 3)); // more than the whole pool
    expect(() => engine.generate(ctx, { grammar })).toThrow(/KV cache/);
    expect(grammar.numUsers).toBe(0);
    expect(engine.stats().grammar.constrained).toBe(0);
    engine.release(ctx);
  });
});

describe('sampling from the driver\'s head', () => {
  /** Tokens of four seeded generations at once, and how the engine drew them. */
  async function sampleAll(engine: Engine, sampling: SamplingParams, maxTokens = 24) {
    const counts = { headRows: 0, fullRows: 0, undecided: 0 };
    const unlisten = engine.addStepListener((s) => {
      counts.headRows += s.headRows;
      counts.fullRows += s.fullRows;
      counts.undecided += s.undecided;
    });
    const runs = [0, 1, 2, 3].map(async (i) => {
      const ctx = engine.createContext();
      engine.append(ctx, [1 + i, 2, 3]);
      const r = await engine.generate(ctx, { sampling: { ...sampling, seed: 100 + i }, maxTokens, ignoreEos: true }).result;
      engine.release(ctx);
      return r.tokens;
    });
    const tokens = await Promise.all(runs);
    unlisten();
    return { tokens, ...counts };
  }

  const settings: [string, SamplingParams][] = [
    ['temperature and top-p', { temperature: 0.8, topP: 0.95 }],
    ['top-k within the head', { temperature: 1, topK: 40 }],
    ['min-p', { temperature: 1.2, minP: 0.1 }],
    ['bias and penalties', { temperature: 0.7, topP: 0.5, presencePenalty: 0.5, frequencyPenalty: 0.3, logitBias: { 5: 2, 9: -100 } }],
    ['top-k beyond the head', { temperature: 1, topK: 100 }],
  ];
  for (const [name, sampling] of settings) {
    it(`draws the same tokens as full rows on the host, for the same seeds: ${name}`, async () => {
      const withHead = await testEngine(randomModelDir(), { numPages: 64 });
      const without = await testEngine(randomModelDir(), { numPages: 64, samplingHead: false });
      const a = await sampleAll(withHead, sampling);
      const b = await sampleAll(without, sampling);
      expect(a.tokens).toEqual(b.tokens);
      expect(new Set(a.tokens.flat()).size).toBeGreaterThan(10); // sampled, not greedy
      expect(b.headRows).toBe(0);
      expect(b.fullRows).toBe(4 * 24);
      if (sampling.topK === 100) {
        // Beyond the head: every row comes with its full distribution from the start, none goes back.
        expect(a.fullRows).toBe(4 * 24);
        expect(a.undecided).toBe(0);
      } else {
        expect(a.headRows).toBeGreaterThan(a.fullRows);
        expect(a.fullRows).toBe(a.undecided); // each undecided row came back once, in full
      }
      expect(a.headRows + a.fullRows).toBe(4 * 24);
    });
  }

  it("computes a prompt's last row bit for bit the same in its prompt chunk and alone (what running a row again relies on)", async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 64, prefixCaching: false });
    const prompt = [5, 17, 33, 2, 99, 120, 7, 64, 3];
    const a = engine.createContext();
    engine.append(a, prompt);
    const [whole] = (await engine.forward(a)).logits;
    const b = engine.createContext();
    engine.append(b, prompt.slice(0, -1));
    await engine.forward(b);
    engine.append(b, prompt.slice(-1));
    const [alone] = (await engine.forward(b)).logits;
    expect(alone).toEqual(whole);
    engine.release(a);
    engine.release(b);
  });

  it('holds at the extremes: a temperature of 1e-39 is greedy, a +100 bias makes its token certain, -100 on every token changes nothing', async () => {
    const engine = await testEngine(randomModelDir(), { numPages: 64 });
    const greedyTokens = (await sampleAll(engine, { temperature: 0 }, 8)).tokens;
    expect((await sampleAll(engine, { temperature: 1e-39 }, 8)).tokens).toEqual(greedyTokens);
    expect((await sampleAll(engine, { temperature: 1, logitBias: { 7: 100 } }, 8)).tokens.flat().every((t) => t === 7)).toBe(true);
    const all = Object.fromEntries(Array.from({ length: engine.model.config.vocabSize }, (_, t) => [t, -100]));
    expect((await sampleAll(engine, { temperature: 0.5, logitBias: all, topK: 1 }, 8)).tokens).toEqual(greedyTokens);
  });

  it('runs an undecided row again, with the same KV, uniforms and grammar state, losing nothing', async () => {
    const { engine, driver } = await mockEngine({ numPages: 12 });
    // A head that can decide nothing: no weight in its candidates, all in a tail whose draws hold no pick.
    const runStep = driver.run.bind(driver);
    driver.run = async (b) => {
      const r = await runStep(b);
      if (r.head) {
        r.head.p.fill(0);
        const D = 1 + 3 * HEAD_DRAWS;
        for (let row = 0; row < r.head.draws.length / D; row++) {
          r.head.draws[row * D] = 1;
          for (let j = 0; j < HEAD_DRAWS; j++) r.head.draws.set([-1], row * D + 1 + j), r.head.draws.set([0], row * D + 1 + HEAD_DRAWS + j);
        }
      }
      return r;
    };
    const { engine: reference } = await mockEngine({ numPages: 12, samplingHead: false });
    const grammar = await engine.grammars.compile({ type: 'regex', pattern: '[a-z ]{0,40}' });
    const refGrammar = await reference.grammars.compile({ type: 'regex', pattern: '[a-z ]{0,40}' });
    const run = async (e: Engine, g: typeof grammar) => {
      const counts = { undecided: 0 };
      e.addStepListener((s) => void (counts.undecided += s.undecided));
      const ctx = e.createContext();
      e.append(ctx, [1, 2, 3]);
      const r = await e.generate(ctx, { sampling: { temperature: 1, seed: 5 }, maxTokens: 30, grammar: g }).result;
      e.release(ctx);
      return { ...r, ...counts };
    };
    const a = await run(engine, grammar);
    const b = await run(reference, refGrammar);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.text).toMatch(/^[a-z ]{0,40}$/);
    expect(a.undecided).toBe(a.tokens.length);
    expect(b.undecided).toBe(0);
  });
});

describe('sampling from the driver\'s head, in mixed batches', () => {
  it('gives each row of a batch that mixes greedy, host-sampled and head rows what it gets alone', async () => {
    const { engine } = await mockEngine({ numPages: 64 });
    const settings: SamplingParams[] = [{ temperature: 0 }, { temperature: 1, seed: 3, logitBias: { 7: 1 } }, { temperature: 1, seed: 4, logprobs: 2 }, { temperature: 0.9, seed: 5, presencePenalty: 1 }, { temperature: 0, logitBias: { 8: 3 } }];
    const run = (sampling: SamplingParams, i: number) => {
      const ctx = engine.createContext();
      engine.append(ctx, [10 + i, 20, 30]);
      return engine.generate(ctx, { sampling, maxTokens: 12, ignoreEos: true }).result.then((r) => (engine.release(ctx), r.tokens));
    };
    const alone: number[][] = [];
    for (const [i, s] of settings.entries()) alone.push(await run(s, i));
    expect(await Promise.all(settings.map(run))).toEqual(alone);
  });
});
