import { afterEach, describe, expect, it } from 'vitest';
import type { StepStats } from '../engine/index.ts';
import { greedy, mockEngine } from '../../test/helpers.ts';
import { buckets125, GatewayMetrics, TTFT_BUCKETS, type RequestEnd } from './metrics.ts';

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
      expect(value(text, 'pie_kv_pages_capacity', { model })).toBe(s.pages.total);
      expect(value(text, 'pie_kv_cache_usage_perc', { model })).toBeCloseTo(s.pages.inUse / s.pages.total);
      expect(value(text, 'pie_num_requests_running', { model })).toBe(s.running);
      expect(value(text, 'pie_num_requests_waiting', { model })).toBe(s.waiting);
    } finally {
      engine.release(ctx);
    }
  });

  it('counts prefix cache queries and hits in tokens, as vLLM does, prompts under one page included, without double counting over scrapes', async () => {
    const { engine } = await mockEngine(); // pages of 4 tokens
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    await greedy(engine, PROMPT, 2);
    await greedy(engine, PROMPT, 2); // its first 8 tokens (two full pages, not the page of its last token) come from the cache
    await greedy(engine, [1, 2, 3], 2); // shorter than a page: a query all the same
    const model = engine.model.name;
    for (let scrape = 0; scrape < 2; scrape++) {
      const text = await m.metrics();
      expect(text).toContain('# TYPE pie_prefix_cache_queries_total counter');
      expect(value(text, 'pie_prefix_cache_queries_total', { model })).toBe(12 + 12 + 3);
      expect(value(text, 'pie_prefix_cache_hits_total', { model })).toBe(8);
      expect(value(text, 'pie_preemptions_total', { model })).toBe(engine.stats().preemptions);
    }
  });

  it("puts an observed TTFT in vLLM's bucket", async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    m.startRequest('tiny', 1000).tokens(1, null, 1030);
    const text = await m.metrics();
    expect(TTFT_BUCKETS).toContain(0.04);
    expect(value(text, 'pie_time_to_first_token_seconds_bucket', { model: 'tiny', le: '0.02' })).toBe(0);
    expect(value(text, 'pie_time_to_first_token_seconds_bucket', { model: 'tiny', le: '0.04' })).toBe(1);
    expect(value(text, 'pie_time_to_first_token_seconds_bucket', { model: 'tiny', le: '2560' })).toBe(1);
  });

  it('renders HTTP and host metrics', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], host: { stats: () => ({ running: 3 }) }, collectDefaults: false }));
    m.requestStarted('POST');
    m.requestStarted('POST');
    m.requestEnded('POST');
    m.requestDone({ route: '/v1/chat/completions', method: 'POST', status: 200 }, 0.2);
    const text = await m.metrics();
    expect(value(text, 'pie_http_requests_in_flight', { method: 'POST' })).toBe(1);
    expect(value(text, 'pie_http_requests_total', { route: '/v1/chat/completions', method: 'POST', status: '200' })).toBe(1);
    expect(value(text, 'pie_http_request_duration_seconds_count', { method: 'POST' })).toBe(1);
    expect(value(text, 'pie_inferlets_running')).toBe(3);
  });

  it('records tokens, TTFT and inter-token latency as they are produced, before the request ends', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    const r = m.startRequest('tiny', 0);
    r.prompt(7);
    r.tokens(1, null, 40); // the first token, 40 ms in
    r.tokens(1, 20, 60);
    r.tokens(1, 20, 80);
    let text = await m.metrics();
    expect(value(text, 'pie_time_to_first_token_seconds_count', { model: 'tiny' })).toBe(1);
    expect(value(text, 'pie_time_to_first_token_seconds_sum', { model: 'tiny' })).toBeCloseTo(0.04);
    expect(value(text, 'pie_inter_token_latency_seconds_count', { model: 'tiny' })).toBe(2);
    expect(value(text, 'pie_generation_tokens_total', { model: 'tiny' })).toBe(3);
    expect(value(text, 'pie_prompt_tokens_total', { model: 'tiny' })).toBe(7);
    expect(value(text, 'pie_e2e_request_latency_seconds_count', { model: 'tiny' })).toBeUndefined(); // it has not ended
    r.tokens(2, 20, 100); // later tokens observe no second TTFT
    text = await m.metrics();
    expect(value(text, 'pie_time_to_first_token_seconds_count', { model: 'tiny' })).toBe(1);
    expect(value(text, 'pie_generation_tokens_total', { model: 'tiny' })).toBe(5);
  });

  it("observes each generation's queue, prefill, decode and inference time and time per output token", async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    const r = m.startRequest('tiny', 0);
    r.generation({ queuedAt: 10, scheduledAt: 15, firstTokenAt: 35, lastTokenAt: 135, completionTokens: 11, finishReason: 'length' });
    r.generation({ queuedAt: 10, scheduledAt: 0, firstTokenAt: 0, lastTokenAt: 0, completionTokens: 0, finishReason: 'cancelled' }); // never ran
    r.generation({ queuedAt: 10, scheduledAt: 12, firstTokenAt: 20, lastTokenAt: 20, completionTokens: 1, finishReason: 'stop' }); // one token: no TPOT
    const text = await m.metrics();
    const sum = (name: string) => value(text, `pie_request_${name}_sum`, { model: 'tiny' });
    const count = (name: string) => value(text, `pie_request_${name}_count`, { model: 'tiny' });
    expect(count('queue_time_seconds')).toBe(2);
    expect(sum('queue_time_seconds')).toBeCloseTo(0.005 + 0.002);
    expect(sum('prefill_time_seconds')).toBeCloseTo(0.02 + 0.008);
    expect(sum('decode_time_seconds')).toBeCloseTo(0.1);
    expect(sum('inference_time_seconds')).toBeCloseTo(0.12 + 0.008);
    expect(count('time_per_output_token_seconds')).toBe(1);
    expect(sum('time_per_output_token_seconds')).toBeCloseTo(0.01);
  });

  it('observes the per-request histograms of vLLM when a request ends, and counts one finish reason per choice', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    const end: RequestEnd = { reasons: ['length', 'tool_calls'], promptTokens: 30, generationTokens: 12, maxGenerationTokens: 8, params: { maxTokens: 8, n: 2 } };
    m.startRequest('tiny', 0).end(end, 1200);
    m.startRequest('tiny', 0).end({ reasons: ['abort'], promptTokens: 5, generationTokens: 0, maxGenerationTokens: 0, params: {} }, 100);
    const text = await m.metrics();
    const model = 'tiny';
    expect(value(text, 'pie_e2e_request_latency_seconds_sum', { model })).toBeCloseTo(1.3);
    expect(value(text, 'pie_request_success_total', { model, finished_reason: 'length' })).toBe(1);
    expect(value(text, 'pie_request_success_total', { model, finished_reason: 'tool_calls' })).toBe(1);
    expect(value(text, 'pie_request_success_total', { model, finished_reason: 'abort' })).toBe(1);
    expect(value(text, 'pie_request_prompt_tokens_sum', { model })).toBe(35);
    expect(value(text, 'pie_request_generation_tokens_sum', { model })).toBe(12);
    expect(value(text, 'pie_request_max_num_generation_tokens_sum', { model })).toBe(8);
    // Parameters the request did not give are not observed.
    expect(value(text, 'pie_request_params_max_tokens_count', { model })).toBe(1);
    expect(value(text, 'pie_request_params_max_tokens_sum', { model })).toBe(8);
    expect(value(text, 'pie_request_params_n_count', { model })).toBe(1);
    expect(value(text, 'pie_request_params_n_bucket', { model, le: '2' })).toBe(1);
    expect(value(text, 'pie_request_params_n_bucket', { model, le: '1' })).toBe(0);
    // Token counts go in 1-2-5 buckets up to the context length, as vLLM's.
    expect(buckets125(256)).toEqual([1, 2, 5, 10, 20, 50, 100, 200]);
    expect(value(text, 'pie_request_prompt_tokens_bucket', { model, le: '5' })).toBe(1);
    expect(value(text, 'pie_request_prompt_tokens_bucket', { model, le: '50' })).toBe(2);
  });

  it("has inter-token and request latency buckets below vLLM's lowest, for fast models", async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false }));
    const r = m.startRequest('tiny', 0);
    r.tokens(1, null, 1);
    r.tokens(1, 0.8, 1.8); // 0.8 ms and 4 ms: vLLM's lowest bucket (10 ms) held both
    r.tokens(1, 4, 5.8);
    r.end({ reasons: ['stop'], promptTokens: 1, generationTokens: 3, maxGenerationTokens: 3, params: {} }, 20); // 20 ms
    const text = await m.metrics();
    const itl = (le: string) => value(text, 'pie_inter_token_latency_seconds_bucket', { model: 'tiny', le });
    expect(itl('0.001')).toBe(1);
    expect(itl('0.005')).toBe(2);
    expect(value(text, 'pie_e2e_request_latency_seconds_bucket', { model: 'tiny', le: '0.01' })).toBe(0);
    expect(value(text, 'pie_e2e_request_latency_seconds_bucket', { model: 'tiny', le: '0.025' })).toBe(1);
  });

  it('gives only counters the _total suffix (promtool warns otherwise), the process metrics included', async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], host: { stats: () => ({ running: 0 }) } }));
    const text = await m.metrics();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => ({ name, type }));
    expect(types.length).toBeGreaterThan(20);
    for (const { name, type } of types) if (type !== 'counter') expect(name, `${name} is a ${type}`).not.toMatch(/_total$/);
    expect(text).toContain('pie_nodejs_active_handles{'); // the same counts, by type
  });

  it("takes vLLM's names and model_name label when asked, and keeps ours for what vLLM has not", async () => {
    const { engine } = await mockEngine();
    const m = track(new GatewayMetrics({ engines: [engine], collectDefaults: false, names: 'vllm' }));
    await greedy(engine, PROMPT, 2);
    const r = m.startRequest(engine.model.name, 0);
    r.tokens(1, null, 10);
    r.end({ reasons: ['stop'], promptTokens: 12, generationTokens: 1, maxGenerationTokens: 1, params: { n: 1 } }, 20);
    const text = await m.metrics();
    const model_name = engine.model.name;
    expect(value(text, 'vllm:time_to_first_token_seconds_count', { model_name })).toBe(1);
    expect(value(text, 'vllm:generation_tokens_total', { model_name })).toBe(1);
    expect(value(text, 'vllm:request_success_total', { model_name, finished_reason: 'stop' })).toBe(1);
    expect(value(text, 'vllm:prefix_cache_queries_total', { model_name })).toBe(12);
    expect(value(text, 'vllm:num_preemptions_total', { model_name })).toBe(0);
    expect(value(text, 'vllm:kv_cache_usage_perc', { model_name })).toBeGreaterThanOrEqual(0);
    expect(value(text, 'pie_batch_size_count', { model_name })).toBeGreaterThan(0);
    expect(text).not.toMatch(/[{,]model="/);
    expect(text).not.toMatch(/^pie_(time_to_first_token|generation_tokens|request_success|num_requests)/m);
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

  it("listens to the engine's steps beside other listeners, and stops on close()", async () => {
    const { engine } = await mockEngine();
    const seen: StepStats[] = [];
    engine.addStepListener((s) => void seen.push(s));
    const m = new GatewayMetrics({ engines: [engine], collectDefaults: false });
    await greedy(engine, [1, 2, 3], 2);
    expect(seen.length).toBeGreaterThan(0);
    const batches = value(await m.metrics(), 'pie_batch_size_count', { model: engine.model.name });
    expect(batches).toBeGreaterThan(0);
    const histogram = m.registry.getSingleMetric('pie_batch_size')!;
    const count = async () => ((await histogram.get()).values as Array<{ metricName?: string; value: number }>).find((v) => v.metricName === 'pie_batch_size_count')!.value;
    expect(await count()).toBe(batches);
    m.close();
    const before = seen.length;
    await greedy(engine, [1, 2, 3], 2);
    expect(seen.length).toBeGreaterThan(before); // the other listener still hears
    expect(await count()).toBe(batches); // ours does not
    expect(await m.metrics()).not.toContain('pie_');
  });
});
