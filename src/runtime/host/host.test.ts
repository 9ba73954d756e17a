import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { mockEngine, randomModelDir, REPO_ROOT, SMALL_SPEC, testEngine } from '../../../test/helpers.ts';
import { PRESETS } from '../../model/random.ts';
import { buildInferlet, COMPONENT_CACHE, echoComponent, testHost } from '../../../test/inferlet-helpers.ts';
import { ComponentStore } from './component-store.ts';
import type { StoredComponent } from './component-store.ts';
import type { InferletHost } from './host.ts';
import { InvocationError } from './invocation.ts';
import { HEARTBEAT } from '../protocol.ts';

let probePath: string;
beforeAll(async () => {
  probePath = await buildInferlet(join(REPO_ROOT, 'test/inferlets/probe.ts'));
}, 120_000);

async function setup(options: Parameters<typeof testHost>[1] = {}, engineOptions: Parameters<typeof mockEngine>[0] = {}) {
  const { engine } = await mockEngine(engineOptions);
  const host = await testHost([engine], options);
  const probe = await host.load(probePath);
  return { engine, host, probe };
}

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const run = async (host: InferletHost, probe: StoredComponent, input: object, options = {}) => JSON.parse((await host.invoke(probe, { input, ...options }).result).data!);

describe('InferletHost', () => {
  it('serves the grammar interface: refusals, allowed sets, accept, rollback, fork, reset, and generate from a matcher', async () => {
    const { engine, host, probe } = await setup({}, { stepDelayMs: 30 }); // the first generation is still running when the second asks
    const r = await run(host, probe, { action: 'grammar' });
    expect(r.refused).toMatchObject({ code: 'invalid-argument' });
    expect(r.refused.message).toMatch(/parenthesis/);
    expect(r.early).toBe(false);
    expect(r.sameAllowed).toBe(true);
    expect(r.backAllowed).toBe(true);
    expect(r.badRollback).toMatchObject({ code: 'invalid-argument' });
    expect(['abc', 'abd']).toContain(r.text);
    expect(r.finish).toBe('stop');
    expect(r.terminated).toBe(true);
    expect(r.forkTerminated).toBe(false);
    expect(r.busy).toMatchObject({ code: 'busy' });
    expect(engine.grammars.stats().matchers).toBe(0); // released with the invocation
  });

  it('runs an invocation: input in, result out, its pages back in the pool', async () => {
    const { engine, host, probe } = await setup();
    expect(await run(host, probe, { action: 'echo' })).toEqual({ input: { action: 'echo' }, models: [engine.model.name] });
    const inv = host.invoke(probe, { input: { action: 'generate', max_tokens: 6 } });
    const events: string[] = [];
    inv.onEvent((e) => e.event === 'text' && events.push(e.data));
    const r = JSON.parse((await inv.result).data!);
    expect(r.tokens).toHaveLength(6);
    expect(r.finish_reason).toBe('length');
    expect(events.join('')).toBe(r.text);
    expect(engine.kv.pool.numInUse).toBe(0);
    expect(engine.numContexts).toBe(0);
    expect(host.stats()).toMatchObject({ started: 2, succeeded: 2, running: 0 });
  });

  it('reuses an instance only for invocations that ask to, and gives every other invocation a fresh one', async () => {
    const { host, probe } = await setup({ workers: 1, warmInstances: 1 });
    const reused = [];
    for (let i = 0; i < 3; i++) reused.push((await run(host, probe, { action: 'runs' }, { reuseInstance: true })).runs);
    expect(reused).toEqual([1, 2, 3]); // module state survived: the same instance ran all three
    const fresh = [];
    for (let i = 0; i < 3; i++) fresh.push((await run(host, probe, { action: 'runs' })).runs);
    expect(fresh).toEqual([1, 1, 1]);
    // A failed run (it took the used instance) does not hand it back: the next one starts fresh.
    await expect(host.invoke(probe, { input: { action: 'throw' }, reuseInstance: true }).result).rejects.toThrow();
    expect((await run(host, probe, { action: 'runs' }, { reuseInstance: true })).runs).toBe(1);
  });

  it('answers model questions inside the worker: info, special tokens, encode and decode', async () => {
    const { engine, host, probe } = await setup();
    const r = await run(host, probe, { action: 'info' });
    expect(r.info).toMatchObject({ name: engine.model.name, vocabSize: engine.model.config.vocabSize, pageSize: 4, eosTokenIds: engine.model.eosTokenIds });
    const special = [...engine.model.tokenizer.specialIds].sort((a, b) => a - b);
    expect(r.special.map(([, id]: [string, number]) => id)).toEqual(special);
    expect(r.special.length).toBeGreaterThan(0);
    expect(r.roundTrip).toBe(engine.model.tokenizer.decode(engine.model.tokenizer.encode('hello there', { addBos: false })));
  });

  it("gives the same tokens through the guest's generate, its pulled chunks and the engine's own loop", async () => {
    const { engine, host, probe } = await setup();
    const prompt = [3, 1, 4, 1, 5, 9, 2, 6];
    const viaStream = await run(host, probe, { action: 'generate', prompt, max_tokens: 10 });
    const viaPull = await run(host, probe, { action: 'generate-pull', prompt, max_tokens: 10 });
    const ctx = engine.createContext();
    engine.append(ctx, prompt);
    const native = await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 10 }).result;
    engine.release(ctx);
    expect(viaStream.tokens).toEqual(native.tokens);
    expect(viaPull.chunks.flat()).toEqual(native.tokens);
  });

  it('returns expected failures to the guest as errors with codes', async () => {
    const { host, probe } = await setup();
    const r = await run(host, probe, { action: 'errors' });
    expect(r.badModel).toMatchObject({ code: 'not-found' });
    expect(r.badModel.message).toContain('no-such-model');
    expect(r.badToken).toMatchObject({ code: 'invalid-argument' });
    expect(r.noSnapshot).toMatchObject({ code: 'not-found' });
    expect(r.badSampling).toMatchObject({ code: 'invalid-argument' });
    expect(r.badSampling.message).toContain('temperature');
    expect(r.badSamplingIterated).toMatchObject({ code: 'invalid-argument' }); // iterating a generation that never started throws too
    expect(r.refusedMany).toBe(4200);
    expect(r.tooLong).toMatchObject({ code: 'context-length-exceeded' });
    expect(r.afterTooLong).toBe(3); // the refused fill changed nothing
  });

  it('costs a guest one wait to fill a new context and generate: create, fill, generate and finish reach the host in one message', async () => {
    const { engine, host, probe } = await setup();
    const batches: string[][] = [];
    for (const { worker } of (host as unknown as { slots: Array<{ worker: Worker }> }).slots) {
      worker.on('message', (m: { t: string; calls?: Array<[number, number, string, unknown]> }) => {
        const ops = (m.calls ?? []).map((c) => c[2]).filter((op) => op !== 'runtime.log');
        if (ops.length > 0) batches.push(ops);
      });
    }
    const r = await run(host, probe, { action: 'generate', max_tokens: 4 });
    expect(r.tokens).toHaveLength(4);
    expect(batches[0]).toEqual(['context.create', 'context.append', 'inference.generate', 'generation.finish']);
    expect(engine.kv.pool.numInUse).toBe(0);
  });

  it('computes tree-shaped siblings in one forward step, each as if alone (real driver)', async () => {
    const engine = await testEngine(randomModelDir(SMALL_SPEC, 4), { numPages: 32, pageSize: 4 });
    const host = await testHost([engine]);
    const probe = await host.load(probePath);
    const r = await run(host, probe, { action: 'tree', prompt: [11, 22, 33, 44, 55] });
    for (let i = 0; i < 2; i++) {
      expect(r.tree[i].map((t: { token: number }) => t.token)).toEqual(r.alone[i].map((t: { token: number }) => t.token));
      r.tree[i].forEach((t: { logprob: number }, j: number) => expect(t.logprob).toBeCloseTo(r.alone[i][j].logprob, 4));
    }
    expect(engine.kv.pool.numInUse).toBe(0);
  });

  it('refuses a bad forward step before appending its tokens', async () => {
    const { host, probe } = await setup();
    const r = await run(host, probe, { action: 'bad-forward' });
    expect(r.refused).toMatchObject({ code: 'invalid-argument' });
    expect(r.badRow).toMatchObject({ code: 'invalid-argument' });
    expect(r.length).toBe(3);
  });

  it('fails an invocation whose guest throws, with its message, and releases what it held', async () => {
    const { engine, host, probe } = await setup();
    const inv = host.invoke(probe, { input: { action: 'throw', message: 'the guest gave up' } });
    await expect(inv.result).rejects.toThrow('the guest gave up');
    await expect(inv.result).rejects.toMatchObject({ kind: 'guest' });
    expect(inv.state).toBe('failed');
    expect(engine.kv.pool.numInUse).toBe(0);
    expect(engine.numContexts).toBe(0);
  });

  it('cancels an invocation mid-generation: its pages are free and the caller sees cancelled', async () => {
    const { engine, host, probe } = await setup({}, { stepDelayMs: 2 });
    const abort = new AbortController();
    const inv = host.invoke(probe, { input: { action: 'hold', max_tokens: 200 }, signal: abort.signal });
    await until(() => engine.numDecodeTokensComputed >= 3);
    expect(engine.kv.pool.numInUse).toBeGreaterThan(0);
    abort.abort();
    await expect(inv.result).rejects.toMatchObject({ kind: 'cancelled' });
    expect(engine.kv.pool.numInUse).toBe(0);
    expect(engine.numContexts).toBe(0);
    expect(host.stats().cancelled).toBe(1);
  });

  it('enforces the wall-time limit', async () => {
    const { engine, host, probe } = await setup({}, { stepDelayMs: 2 });
    const inv = host.invoke(probe, { input: { action: 'hold' }, limits: { wallTimeMs: 150 } });
    await expect(inv.result).rejects.toThrow(/wall time of 150 ms/);
    await expect(inv.result).rejects.toMatchObject({ kind: 'limit' });
    expect(engine.kv.pool.numInUse).toBe(0);
  });

  it('enforces the token limit across generations', async () => {
    const { host, probe } = await setup();
    const r = await run(host, probe, { action: 'limit-tokens', max_tokens: 100 }, { limits: { tokens: 40 } });
    expect(r.first).toBe(40);
    expect(r.second).toMatchObject({ code: 'limit-exceeded' });
  });

  it('caps a generation at the KV page limit, and refuses a prompt that cannot fit', async () => {
    const { engine, host, probe } = await setup(); // 4 tokens a page
    const capped = await run(host, probe, { action: 'limit-pages', max_tokens: 200 }, { limits: { kvPages: 8 } });
    expect(capped.ok).toMatchObject({ finish_reason: 'length' });
    expect(capped.ok.tokens).toHaveLength(8 * 4 - 5);
    const prompt = Array.from({ length: 40 }, (_, i) => i + 1);
    const refused = await run(host, probe, { action: 'limit-pages', prompt }, { limits: { kvPages: 8 } });
    expect(refused).toMatchObject({ code: 'limit-exceeded' });
    expect(refused.message).toContain('limit of 8');
    expect(engine.kv.pool.numInUse).toBe(0);
  });

  it('stops a guest whose linear memory passes its limit', async () => {
    const { host, probe } = await setup();
    const inv = host.invoke(probe, { input: { action: 'memory', mb: 48 }, limits: { memoryBytes: 32 * 1024 * 1024 } });
    await expect(inv.result).rejects.toThrow(/exceeds its limit of 33554432 bytes/);
    await expect(inv.result).rejects.toMatchObject({ kind: 'limit' });
    const ok = await run(host, probe, { action: 'memory', mb: 4 }, { limits: { memoryBytes: 32 * 1024 * 1024 } });
    expect(ok.kept).toBe(4);
  });

  it('keeps serving while a guest spins: ten others complete, the spinner is stopped, its worker replaced', async () => {
    const { engine, host, probe } = await setup({ workers: 3, stallMs: 1500 });
    const spinner = host.invoke(probe, { input: { action: 'spin' } });
    // The spinner's worker stops beating: no new work goes there (waited for, not timed: a loaded machine starts the spinner late).
    const slots = (host as unknown as { slots: Array<{ heartbeat: Int32Array; responsive: boolean }> }).slots;
    const spinning = (s: (typeof slots)[number]) => Atomics.load(s.heartbeat, HEARTBEAT.running) === spinner.id;
    await until(() => slots.some((s) => spinning(s) && !s.responsive) && slots.every((s) => spinning(s) || s.responsive));
    const others = Array.from({ length: 10 }, (_, i) => run(host, probe, { action: 'generate', prompt: [1, 2, 3, i + 4], max_tokens: 4 }));
    const results = await Promise.all(others);
    expect(results.every((r) => r.tokens.length === 4)).toBe(true);
    await expect(spinner.result).rejects.toThrow(/without yielding/);
    await expect(spinner.result).rejects.toBeInstanceOf(InvocationError);
    expect(host.stats().workerRestarts).toBe(1);
    expect(await run(host, probe, { action: 'echo' })).toMatchObject({ input: { action: 'echo' } });
    expect(engine.kv.pool.numInUse).toBe(0);
  }, 20_000);

  it('does not mistake a burst of starts for a stuck guest, even on a machine busy with other work', async () => {
    const { host, probe } = await setup({ workers: 2, stallMs: 1000 });
    // Threads that take the cores for a few seconds: the workers get little of them, which is not stalling.
    const burners = Array.from({ length: 3 }, () => new Worker('const end = Date.now() + 3000; while (Date.now() < end);', { eval: true }));
    try {
      const t0 = performance.now();
      const all = Array.from({ length: 300 }, () => host.invoke(probe, { input: { action: 'echo' } }));
      await Promise.all(all.map((i) => i.result));
      expect(host.stats()).toMatchObject({ succeeded: 300, workerRestarts: 0 });
      expect(performance.now() - t0).toBeGreaterThan(250); // long enough for the beat to matter
    } finally {
      await Promise.all(burners.map((b) => b.terminate()));
    }
  }, 30_000);

  it("takes tokenizing for the host's own work, not a stall: a long prompt does not get its worker (and its neighbours) killed", async () => {
    // A long context, so that a text it can hold takes far longer to tokenize (about a second) than the stall limit.
    const spec = { ...PRESETS.tiny, maxPositionEmbeddings: 1 << 17 };
    const { engine, host, probe } = await setup({ workers: 1, stallMs: 300 }, { spec });
    const cap = engine.model.config.maxPositionEmbeddings * engine.model.tokenizer.maxTokenBytes * 3;
    // Varied words, so that no tokenizer cache makes it quick.
    let seed = 7;
    const text = Array.from({ length: Math.floor(cap * 0.5) }, () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 7 === 0 ? ' ' : String.fromCharCode(97 + (seed % 26)))).join('');
    const long = host.invoke(probe, { input: { action: 'encode', message: text, count: 1 } });
    const neighbour = run(host, probe, { action: 'generate', prompt: [1, 2, 3], max_tokens: 2 });
    const r = JSON.parse((await long.result).data!);
    expect(r.tokens).toBeGreaterThan(0);
    expect((await neighbour).tokens).toHaveLength(2);
    expect(host.stats().workerRestarts).toBe(0);
  });

  it('refuses a text no context can hold before tokenizing it (context-length-exceeded, the model accepts at most …)', async () => {
    const { host, probe } = await setup({ workers: 1, stallMs: 200 });
    // Refused before tokenizing (which would take seconds), whatever the text.
    const r = await run(host, probe, { action: 'encode-huge', mb: 3 });
    expect(r).toMatchObject({ code: 'context-length-exceeded', message: expect.stringMatching(/the model accepts at most/) });
    expect(host.stats().workerRestarts).toBe(0);
  });

  it('bounds what one invocation holds: contexts, and the logits one forward call brings to the host', async () => {
    const { host, probe } = await setup({}, { spec: { ...PRESETS.tiny, vocabSize: 32000 }, numPages: 512 });
    // 32 000 logits a row: at most 524 rows from one call.
    expect(await run(host, probe, { action: 'wide-forward', count: 500 })).toEqual({ ok: 1 });
    expect(await run(host, probe, { action: 'wide-forward', count: 600 })).toMatchObject({ code: 'limit-exceeded', message: expect.stringMatching(/at most 524 rows/) });
    expect(await run(host, probe, { action: 'contexts', count: 4000 })).toEqual({ made: 4000 });
    const hoarder = host.invoke(probe, { input: { action: 'contexts', count: 5000 } });
    await expect(hoarder.result).rejects.toMatchObject({ kind: 'limit', message: expect.stringMatching(/holds 4096 contexts; the limit is 4096/) });
  });

  it('stops a guest that keeps calling the host after it was cancelled: its worker is replaced after the grace period', async () => {
    const { engine, host, probe } = await setup({ workers: 2, stallMs: 1000, cancelGraceMs: 400 });
    const spinner = host.invoke(probe, { input: { action: 'spin-until-cancelled' }, limits: { wallTimeMs: 300 } });
    await expect(spinner.result).rejects.toThrow(/wall time/);
    const t0 = performance.now();
    while (host.stats().workerRestarts === 0 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(host.stats().workerRestarts).toBe(1);
    // Every later invocation runs (before, the spinning worker took its share of them and never answered).
    const later = await Promise.all(Array.from({ length: 6 }, (_, i) => run(host, probe, { action: 'generate', prompt: [1, 2, i + 3], max_tokens: 2 })));
    expect(later.every((r) => r.tokens.length === 2)).toBe(true);
    expect(engine.kv.pool.numInUse).toBe(0);
  }, 20_000);

  it("quarantines a tenant whose guest cost a worker: when it does it again, other tenants' invocations spread over the workers all survive", async () => {
    const { engine, host, probe } = await setup({ workers: 3, stallMs: 1000, cancelGraceMs: 300, quarantineMs: 60_000 }, { stepDelayMs: 20 });
    // Long enough a wall time for the guest to start on a new worker.
    const spin = () => host.invoke(probe, { input: { action: 'spin-until-cancelled' }, tenant: 'bad', limits: { wallTimeMs: 2000 } });
    const restarts = async (n: number) => {
      const t0 = performance.now();
      while (host.stats().workerRestarts < n && performance.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 20));
      expect(host.stats().workerRestarts).toBe(n);
    };
    await expect(spin().result).rejects.toThrow(/wall time/);
    await restarts(1);
    expect(host.stats().quarantined).toBe(1);
    // Six long invocations of another tenant (seconds each: steps of 20 ms and more), then the same tenant spins again: without the
    // quarantine, they would be spread over all three workers and the spinner's worker would take two of them along.
    const good = Array.from({ length: 6 }, (_, i) => host.invoke(probe, { input: { action: 'generate', prompt: [1, 2, i + 3], max_tokens: 80 }, tenant: 'good' }));
    await new Promise((r) => setTimeout(r, 100));
    await expect(spin().result).rejects.toThrow(/wall time/);
    await restarts(2);
    for (const inv of good) expect(JSON.parse((await inv.result).data!).tokens).toHaveLength(80);
    expect(engine.kv.pool.numInUse).toBe(0);
  }, 60_000);

  it('quarantines nobody with quarantineMs 0 (its default: the gateway sets it only when its keys name several tenants)', async () => {
    const { host, probe } = await setup({ workers: 2, stallMs: 1000, cancelGraceMs: 300 });
    await expect(host.invoke(probe, { input: { action: 'spin-until-cancelled' }, tenant: 'bad', limits: { wallTimeMs: 200 } }).result).rejects.toThrow(/wall time/);
    const t0 = performance.now();
    while (host.stats().workerRestarts < 1 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(host.stats()).toMatchObject({ workerRestarts: 1, quarantined: 0 });
  }, 20_000);

  it("ends a generation at the model's end tokens, which the host supplies: the guest's stop ids are added to them, and ignore_eos takes only them away", async () => {
    // The mock model says 100 until the sequence holds 6 tokens, then its end-of-sequence token.
    const eos = 2;
    const { engine, host, probe } = await setup({}, { behaviour: (seq) => (seq.length >= 6 ? eos : 100) });
    expect(engine.model.eosTokenIds).toContain(eos);
    const gen = (extra: object) => run(host, probe, { action: 'generate', prompt: [1, 2, 3], max_tokens: 8, ...extra });
    // A stop id that never comes: the end token still ends it (the tokens end with the one that stopped it).
    expect(await gen({ stop_token_ids: [7] })).toMatchObject({ finish_reason: 'stop', tokens: [100, 100, 100, eos] });
    // ignore_eos: the end token does not end it, the given stop ids still do.
    expect(await gen({ stop_token_ids: [7], ignore_eos: true })).toMatchObject({ finish_reason: 'length', tokens: [100, 100, 100, eos, eos, eos, eos, eos] });
    expect(await gen({ stop_token_ids: [100], ignore_eos: true })).toMatchObject({ finish_reason: 'stop', tokens: [100] });
  });

  it('keeps a named snapshot across invocations, per tenant', async () => {
    const { engine, host, probe } = await setup();
    await run(host, probe, { action: 'save', name: 'sys', prompt: [9, 8, 7, 6, 5, 4] }, { tenant: 'a' });
    expect(await run(host, probe, { action: 'open', name: 'sys' }, { tenant: 'a' })).toEqual({ length: 6, tokens: [9, 8, 7, 6, 5, 4] });
    const other = JSON.parse((await host.invoke(probe, { input: { action: 'errors' }, tenant: 'b' }).result).data!);
    expect(other.noSnapshot.code).toBe('not-found');
    await expect(host.invoke(probe, { input: { action: 'open', name: 'sys' }, tenant: 'b' }).result).rejects.toThrow(/not-found/);
    expect(engine.deleteSnapshot('sys', 'a')).toBe(true);
  });

  it('passes messages between running invocations of one tenant: queues and topics', async () => {
    const { host, probe } = await setup();
    const puller = host.invoke(probe, { input: { action: 'pull', name: 'q' } });
    await run(host, probe, { action: 'push', name: 'q', message: 'hello' });
    expect(JSON.parse((await puller.result).data!)).toEqual({ got: 'hello' });

    const subs = [0, 1].map(() => host.invoke(probe, { input: { action: 'subscribe', name: 't', count: 1 } }));
    await Promise.all(subs.map((s) => new Promise<void>((resolve) => s.onEvent((e) => e.event === 'subscribed' && resolve()))));
    await run(host, probe, { action: 'broadcast', name: 't', message: 'all' });
    for (const s of subs) expect(JSON.parse((await s.result).data!)).toEqual({ got: ['all'] });
  });

  it("bounds a tenant's messages: size, what its queues hold, how many queues, how long; other tenants are untouched", async () => {
    const { host, probe } = await setup({ messageLimits: { maxMessageChars: 1000, maxCharsPerTenant: 10_000, maxQueuesPerTenant: 5, ttlMs: 300 } });
    const flood = async (args: object, tenant = 'hoarder') => JSON.parse((await host.invoke(probe, { input: { action: 'flood', ...args }, tenant }).result).data!);
    expect(await flood({ name: 'big', count: 1001 })).toMatchObject({ pushed: 0, error: { code: 'limit-exceeded', message: expect.stringMatching(/at most 1000 characters/) } });
    expect(await flood({ name: 'q', count: 1000 })).toMatchObject({ pushed: 10, error: { code: 'limit-exceeded', message: expect.stringMatching(/hold 10000 characters unread/) } });
    expect(host.hub.usage('hoarder')).toEqual({ chars: 10_000, queues: 1 });
    // Another tenant has its own room.
    expect(await flood({ name: 'q', count: 1000 }, 'neighbour')).toMatchObject({ pushed: 10 });
    // Messages expire: then the room is back.
    await new Promise((r) => setTimeout(r, 400));
    expect(await flood({ name: 'q', count: 1000 })).toMatchObject({ pushed: 10 });
    expect(host.hub.usage('hoarder')).toEqual({ chars: 10_000, queues: 1 });
    expect(await run(host, probe, { action: 'pull', name: 'q' }, { tenant: 'hoarder' })).toEqual({ got: 'x'.repeat(1000) });
    expect(await flood({ name: 'many', count: 1, mb: 1 })).toMatchObject({ pushed: 4, error: { code: 'limit-exceeded', message: expect.stringMatching(/5 queues/) } }); // 'q' is the fifth
  });

  it('fails an invocation that overfills a queue, and keeps what the queue holds', async () => {
    const { host, probe } = await setup();
    const flood = host.invoke(probe, { input: { action: 'push', name: 'full', message: 'm', count: 10_001 } });
    await expect(flood.result).rejects.toThrow(/limit-exceeded: the queue holds 10000 unread messages/);
    expect(await run(host, probe, { action: 'pull', name: 'full' })).toEqual({ got: 'm' });
  });

  it('does not let another tenant pull from a queue', async () => {
    const { host, probe } = await setup();
    await run(host, probe, { action: 'push', name: 'private', message: 'secret' }, { tenant: 'a' });
    const pull = host.invoke(probe, { input: { action: 'pull', name: 'private' }, tenant: 'b', limits: { wallTimeMs: 300 } });
    await expect(pull.result).rejects.toMatchObject({ kind: 'limit' });
    expect(await run(host, probe, { action: 'pull', name: 'private' }, { tenant: 'a' })).toEqual({ got: 'secret' });
  });

  it('forgets a component loaded elsewhere (an upload) when told, but never one loaded through load() (a built-in or route with the same bytes)', async () => {
    const { engine } = await mockEngine();
    const host = await testHost([engine]);
    const bytes = await echoComponent('pin1');
    const uploaded = await new ComponentStore(COMPONENT_CACHE).load(bytes);
    await host.invoke(uploaded, { input: 1 }).result;
    expect(host.stats().components).toBe(1);
    host.forget(uploaded);
    expect(host.stats().components).toBe(0);
    const pinned = await host.load(bytes); // the same bytes, the same folder
    await host.invoke(pinned, { input: 2 }).result;
    host.forget(uploaded);
    expect(host.stats().components).toBe(1);
    expect(JSON.parse((await host.invoke(pinned, { input: 3 }).result).data!)).toBe(3);
  });
});
