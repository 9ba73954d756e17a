import { afterEach, describe, expect, it } from 'vitest';
import type { StepStats } from '../engine/index.ts';
import { greedy, mockEngine } from '../../test/helpers.ts';
import { GatewayMetrics, TTFT_BUCKETS } from './metrics.ts';

const open: GatewayMetrics[] = [];
afterEach(() => {
  for (const m of open.splice(0)) m.close();
});

function track(m: GatewayMetrics): GatewayMetrics {
  open.push(m);
  return m;
}

/** The value of one sample line, e.g. value(text, 'pie_kv_pages_total', {model: 'x'}). */
function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const [series, v] = [line.slice(0, line.lastIndexOf(' ')), line.slice(line.lastIndexOf(' ') + 1)];
    if (Object.entries(labels).every(([k, lv]) => series.includes(`${k}="${lv}"`))) return Number(v);
  }
  return undefined;
}

const PROMPT = Array.from({ length: 12 }, (_, i) => 10 + i);

describe('GatewayMetrics', () => {
  it('records a batch-size histogram from engine steps', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    await Promise.all([greedy(engine, PROMPT, 4), greedy(engine, [1, 2, 3], 4)]);
    const text = await m.metrics();
    const model = engine.model.name;
    expect(value(text, 'pie_batch_size_count', { model })).toBeGreaterThan(0);
    expect(value(text, 'pie_batch_tokens_count', { model })).toBe(value(text, 'pie_batch_size_count', { model }));
    expect(value(text, 'pie_batch_size_bucket', { model, le: '256' })).toBe(value(text, 'pie_batch_size_count', { model }));
  });

  it('reports KV page gauges that match engine.stats()', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    const ctx = engine.createContext();
    try {
      engine.append(ctx, PROMPT);
      await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens: 3, ignoreEos: true }).result;
      const text = await m.metrics();
      const s = engine.stats();
      const model = engine.model.name;
      expect(s.pages.inUse).toBeGreaterThan(0);
      expect(value(text, 'pie_kv_pages_in_use', { model })).toBe(s.pages.inUse);
      expect(value(text, 'pie_kv_pages_total', { model })).toBe(s.pages.total);
      expect(value(text, 'pie_kv_cache_usage_perc', { model })).toBeCloseTo(s.pages.inUse / s.pages.total);
      expect(value(text, 'pie_num_requests_running', { model })).toBe(s.running);
      expect(value(text, 'pie_num_requests_waiting', { model })).toBe(s.waiting);
    } finally {
      engine.release(ctx);
    }
  });

  it('exposes prefix cache hits as counters equal to the engine, without double counting over scrapes', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    await greedy(engine, PROMPT, 2);
    await greedy(engine, PROMPT, 2);
    const model = engine.model.name;
    const { hits, misses } = engine.stats().prefixCache;
    expect(hits).toBeGreaterThan(0);
    for (let scrape = 0; scrape < 2; scrape++) {
      const text = await m.metrics();
      expect(text).toContain('# TYPE pie_prefix_cache_hits_total counter');
      expect(value(text, 'pie_prefix_cache_hits_total', { model })).toBe(hits);
      expect(value(text, 'pie_prefix_cache_misses_total', { model })).toBe(misses);
      expect(value(text, 'pie_preemptions_total', { model })).toBe(engine.stats().preemptions);
    }
  });

  it("puts an observed TTFT in vLLM's bucket", async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    m.timeToFirstToken('tiny', 0.03);
    const text = await m.metrics();
    expect(TTFT_BUCKETS).toContain(0.04);
    expect(value(text, 'pie_time_to_first_token_seconds_bucket', { model: 'tiny', le: '0.02' })).toBe(0);
    expect(value(text, 'pie_time_to_first_token_seconds_bucket', { model: 'tiny', le: '0.04' })).toBe(1);
    expect(value(text, 'pie_time_to_first_token_seconds_bucket', { model: 'tiny', le: '2560' })).toBe(1);
  });

  it('renders request, token and host metrics', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], host: { stats: () => ({ running: 3 }) }, collectDefaults: false }));
    m.requestStarted('POST');
    m.requestStarted('POST');
    m.requestEnded('POST');
    m.requestDone({ route: '/v1/chat/completions', method: 'POST', status: 200 }, 0.2);
    m.tokens('tiny', 7, 5);
    m.tokens('tiny', 1, 1);
    m.requestFinished('tiny', 'stop');
    m.interTokenLatency('tiny', 0.02);
    m.e2eLatency('tiny', 1.2);
    const text = await m.metrics();
    expect(value(text, 'pie_http_requests_in_flight', { method: 'POST' })).toBe(1);
    expect(value(text, 'pie_http_requests_total', { route: '/v1/chat/completions', method: 'POST', status: '200' })).toBe(1);
    expect(value(text, 'pie_http_request_duration_seconds_count', { method: 'POST' })).toBe(1);
    expect(value(text, 'pie_prompt_tokens_total', { model: 'tiny' })).toBe(8);
    expect(value(text, 'pie_generation_tokens_total', { model: 'tiny' })).toBe(6);
    expect(value(text, 'pie_request_success_total', { model: 'tiny', finished_reason: 'stop' })).toBe(1);
    expect(value(text, 'pie_inter_token_latency_seconds_bucket', { le: '0.025' })).toBe(1);
    expect(value(text, 'pie_e2e_request_latency_seconds_bucket', { le: '1.5' })).toBe(1);
    expect(value(text, 'pie_inferlets_running')).toBe(3);
  });

  it('counts constrained generations, grammar compiles and cache hits, and times the masks', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    const model = engine.model.name;
    const source = { type: 'regex', pattern: '[^\\n]{1,8}' } as const;
    const a = await greedy(engine, [1, 2, 3], 3, { grammar: await engine.grammars.compile(source) });
    const b = await greedy(engine, [1, 2, 4], 3, { grammar: await engine.grammars.compile(source) });
    await engine.grammars.compile({ type: 'regex', pattern: '((' }).catch(() => undefined);
    const text = await m.metrics();
    expect(value(text, 'pie_constrained_requests_total', { model })).toBe(2);
    expect(value(text, 'pie_grammar_compiles_total', { model })).toBe(1);
    expect(value(text, 'pie_grammar_cache_hits_total', { model })).toBe(1);
    expect(value(text, 'pie_grammar_refused_total', { model })).toBe(1);
    // One observation per step that sampled a constrained row (the two ran one after the other).
    expect(value(text, 'pie_grammar_mask_seconds_count', { model })).toBe(a.completionTokens + b.completionTokens);
  });

  it("counts sampled tokens by how they were drawn: the sampling head, or the full distribution", async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    const model = engine.model.name;
    await greedy(engine, [1, 2, 3], 5, { sampling: { temperature: 1, seed: 1 } });
    await greedy(engine, [1, 2, 3], 3, { sampling: { temperature: 1, seed: 1, topK: 100 } }); // beyond the head: every token drawn in full
    const text = await m.metrics();
    expect(value(text, 'pie_sampling_head_rows_total', { model })).toBe(5);
    expect(value(text, 'pie_sampling_full_rows_total', { model })).toBe(3);
  });

  it('names every metric pie_* in snake_case, without colons', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], host: { stats: () => ({ running: 0 }) } }));
    await greedy(engine, [1, 2, 3], 2);
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name);
    expect(names).toContain('pie_process_cpu_user_seconds_total');
    for (const name of names) {
      expect(name).not.toContain(':');
      expect(name).toMatch(/^pie_[a-z0-9_]+$/);
    }
    const text = await m.metrics();
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) expect(line).toMatch(/^pie_[a-z0-9_]+[{ ]/);
  });

  it('chains a previously set onStep and restores it on close()', async () => {
    const { engine } = await mockEngine();
    const seen: StepStats[] = [];
    const previous = (s: StepStats) => void seen.push(s);
    engine.onStep = previous;
    const m = new GatewayMetrics({ engines: [engine], collectDefaults: false });
    expect(engine.onStep).not.toBe(previous);
    await greedy(engine, [1, 2, 3], 2);
    expect(seen.length).toBeGreaterThan(0);
    expect(value(await m.metrics(), 'pie_batch_size_count', { model: engine.model.name })).toBeGreaterThan(0);
    m.close();
    expect(engine.onStep).toBe(previous);
    expect(await m.metrics()).not.toContain('pie_');
  });
});
