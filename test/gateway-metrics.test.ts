/**
 * GET /metrics as an operator's Prometheus reads it, end to end on the mock
 * engine (a step every few milliseconds, tokens the test chooses): scraped
 * while a stream runs and after requests end; the API's finish reasons;
 * vLLM's names against the series vLLM's own Grafana dashboard queries; and
 * `promtool check metrics` where the tool is installed.
 */
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/index.ts';
import { EXAMPLE_ROUTE, startGateway, type TestServer } from './gateway-helpers.ts';
import { mockEngine } from './helpers.ts';

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

/** A gateway on a mock engine whose model says token 100 (never the end of sequence) until `end.now` is set, then its end of sequence (certain only when greedy). */
async function served(names: 'pie' | 'vllm' = 'pie', stepDelayMs = 2, routes = ''): Promise<{ engine: Engine; s: TestServer; model: string; end: { now: boolean } }> {
  const end = { now: false };
  let eos = -1;
  const { engine } = await mockEngine({ stepDelayMs, numPages: 256, behaviour: () => (end.now ? eos : 100) });
  eos = engine.model.eosTokenIds[0]!;
  const s = await startGateway([engine], { extra: (names === 'vllm' ? '[metrics]\nnames = "vllm"\n' : '') + routes });
  servers.push(s);
  return { engine, s, model: engine.model.name, end };
}

const post = (url: string, path: string, body: object, init: RequestInit = {}) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...init });

const scrape = async (s: TestServer): Promise<string> => await (await fetch(`${s.url}/metrics`)).text();

/** The value of one sample: `name` with (at least) these labels. */
function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const at = line.lastIndexOf(' ');
    if (Object.entries(labels).every(([k, v]) => line.slice(0, at).includes(`${k}="${v}"`))) return Number(line.slice(at + 1));
  }
  return undefined;
}

async function until(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const t0 = performance.now();
  while (!(await check())) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const user = [{ role: 'user', content: 'Hi' }];

describe('metrics, end to end', () => {
  it('records TTFT and tokens while a stream runs (a hung request has its TTFT), and a dropped stream as abort', async () => {
    const { s, model } = await served('pie', 20);
    const abort = new AbortController();
    const res = await post(s.url, '/v1/chat/completions', { model, messages: user, max_tokens: 500, stream: true, temperature: 0 }, { signal: abort.signal });
    const reader = res.body!.getReader();
    let seen = '';
    while (seen.split('"content":"').length < 6) seen += new TextDecoder().decode((await reader.read()).value);

    const during = await scrape(s);
    expect(value(during, 'pie_time_to_first_token_seconds_count', { model })).toBe(1);
    expect(value(during, 'pie_prompt_tokens_total', { model })).toBeGreaterThan(0);
    const tokens = value(during, 'pie_generation_tokens_total', { model })!;
    expect(tokens).toBeGreaterThanOrEqual(4);
    expect(value(during, 'pie_inter_token_latency_seconds_count', { model })).toBeGreaterThanOrEqual(3);
    expect(value(during, 'pie_e2e_request_latency_seconds_count', { model })).toBeUndefined(); // still running
    // Tokens keep counting as the stream goes, not in one spike at its end.
    await until(async () => value(await scrape(s), 'pie_generation_tokens_total', { model })! >= tokens + 3, 'more tokens counted mid-stream');
    expect(value(await scrape(s), 'pie_e2e_request_latency_seconds_count', { model })).toBeUndefined();

    abort.abort();
    await until(async () => value(await scrape(s), 'pie_e2e_request_latency_seconds_count', { model }) === 1, 'the dropped request to end');
    const after = await scrape(s);
    expect(value(after, 'pie_request_success_total', { model, finished_reason: 'abort' })).toBe(1);
    expect(value(after, 'pie_time_to_first_token_seconds_count', { model })).toBe(1);
  });

  it("counts the API's finish reasons, one per choice: length and stop, streamed or not, chat, completions, responses and a custom route", async () => {
    const { s, model, end } = await served('pie', 2, EXAMPLE_ROUTE);
    // Greedy: the mock model's token is then certain (a sample could draw the end of sequence, or miss it).
    const ok = async (r: Promise<Response>) => {
      const res = await r;
      expect(res.status).toBe(200);
      await res.text();
    };
    await ok(post(s.url, '/v1/chat/completions', { model, messages: user, max_tokens: 3, temperature: 0 }));
    await ok(post(s.url, '/v1/chat/completions', { model, messages: user, max_tokens: 3, stream: true, temperature: 0 }));
    await ok(post(s.url, '/v1/chat/completions', { model, messages: user, max_tokens: 3, n: 2, temperature: 0 }));
    await ok(post(s.url, '/v1/completions', { model, prompt: 'Hi', max_tokens: 3, temperature: 0 }));
    await ok(post(s.url, '/v1/completions', { model, prompt: 'Hi', max_tokens: 3, stream: true, temperature: 0 }));
    await ok(post(s.url, '/v1/responses', { model, input: 'Hi', max_output_tokens: 3, store: false, temperature: 0 }));
    await ok(post(s.url, '/v1/examples/best-of/3', { prompt: 'Hi', max_tokens: 3, temperature: 0 })); // one request, whatever it runs: its generations were cut off
    end.now = true;
    await ok(post(s.url, '/v1/chat/completions', { model, messages: user, max_tokens: 3, stream: true, temperature: 0 }));
    await ok(post(s.url, '/v1/responses', { model, input: 'Hi', max_output_tokens: 3, store: false, temperature: 0 }));
    const text = await scrape(s);
    expect(value(text, 'pie_request_success_total', { model, finished_reason: 'length' })).toBe(8);
    expect(value(text, 'pie_request_success_total', { model, finished_reason: 'stop' })).toBe(2);
    expect(text).not.toContain('finished_reason="completed"');
  });

  it("observes vLLM's per-request histograms: max_tokens, n, prompt and generation tokens, and each generation's phases", async () => {
    const { s, model } = await served('pie', 10);
    const res = await post(s.url, '/v1/chat/completions', { model, messages: user, max_tokens: 4, n: 2, temperature: 0 });
    const usage = ((await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
    expect(usage.completion_tokens).toBe(8);
    const text = await scrape(s);
    const sum = (name: string) => value(text, `pie_${name}_sum`, { model });
    const count = (name: string) => value(text, `pie_${name}_count`, { model });
    expect(sum('request_params_max_tokens')).toBe(4);
    expect(sum('request_params_n')).toBe(2);
    expect(sum('request_prompt_tokens')).toBe(usage.prompt_tokens);
    expect(value(text, 'pie_prompt_tokens_total', { model })).toBe(usage.prompt_tokens); // the choices share their prompt
    expect(sum('request_generation_tokens')).toBe(8);
    expect(sum('request_max_num_generation_tokens')).toBe(4);
    for (const phase of ['queue', 'prefill', 'decode', 'inference']) expect(count(`request_${phase}_time_seconds`)).toBe(2);
    // Three steps of at least 10 ms between each choice's first token and its last.
    expect(sum('request_decode_time_seconds')).toBeGreaterThanOrEqual(2 * 0.029);
    expect(count('request_time_per_output_token_seconds')).toBe(2);
    expect(sum('request_time_per_output_token_seconds')! / 2).toBeCloseTo(sum('request_decode_time_seconds')! / 2 / 3, 5);
  });
});

/**
 * The series vLLM's Grafana dashboard queries (all of them filtered on
 * `model_name`), with the type vLLM gives each metric: from
 * examples/observability/prometheus_grafana/grafana.json of vllm-project/vllm
 * at commit 4b5c627c23e6690b8987100d1cbf78e34ac14bf9, plus the "Time Per
 * Output Token (TPOT)" panel of its newest version
 * (docs.vllm.ai/en/latest/examples/observability/prometheus_grafana).
 */
const VLLM_DASHBOARD: Array<[metric: string, type: 'histogram' | 'counter' | 'gauge', queried: string[]]> = [
  ['vllm:e2e_request_latency_seconds', 'histogram', ['_bucket', '_sum', '_count']],
  ['vllm:prompt_tokens_total', 'counter', ['']],
  ['vllm:generation_tokens_total', 'counter', ['']],
  ['vllm:inter_token_latency_seconds', 'histogram', ['_bucket', '_sum', '_count']],
  ['vllm:request_time_per_output_token_seconds', 'histogram', ['_bucket', '_sum', '_count']],
  ['vllm:num_requests_running', 'gauge', ['']],
  ['vllm:num_requests_waiting', 'gauge', ['']],
  ['vllm:time_to_first_token_seconds', 'histogram', ['_bucket', '_sum', '_count']],
  ['vllm:kv_cache_usage_perc', 'gauge', ['']],
  ['vllm:request_prompt_tokens', 'histogram', ['_bucket']],
  ['vllm:request_generation_tokens', 'histogram', ['_bucket']],
  ['vllm:request_success_total', 'counter', ['']],
  ['vllm:request_queue_time_seconds', 'histogram', ['_sum']],
  ['vllm:request_prefill_time_seconds', 'histogram', ['_sum']],
  ['vllm:request_decode_time_seconds', 'histogram', ['_sum']],
  ['vllm:request_max_num_generation_tokens', 'histogram', ['_sum']],
];

describe("vLLM's names", () => {
  it("counts each of a request's prompts once, however many choices fork it (usage.prompt_tokens)", async () => {
    const { s, model } = await served('pie', 2);
    const res = await post(s.url, '/v1/completions', { model, prompt: ['Once upon a time', 'Hi'], max_tokens: 2, n: 3, temperature: 0 });
    const usage = ((await res.json()) as { usage: { prompt_tokens: number } }).usage;
    const text = await scrape(s);
    expect(value(text, 'pie_prompt_tokens_total', { model })).toBe(usage.prompt_tokens);
    expect(value(text, 'pie_request_prompt_tokens_sum', { model })).toBe(usage.prompt_tokens);
    // A scored prompt (echo with logprobs, nothing generated) counts too.
    const scored = await post(s.url, '/v1/completions', { model, prompt: 'Hi there', max_tokens: 0, echo: true, logprobs: 1 });
    const more = ((await scored.json()) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
    expect(value(await scrape(s), 'pie_prompt_tokens_total', { model })).toBe(usage.prompt_tokens + more);
  });

  it("serve every series vLLM's Grafana dashboard queries, of vLLM's type, by model_name", async () => {
    const { s, model } = await served('vllm');
    expect((await post(s.url, '/v1/chat/completions', { model, messages: user, max_tokens: 3, stream: true, temperature: 0 })).status).toBe(200);
    await until(async () => value(await scrape(s), 'vllm:e2e_request_latency_seconds_count', { model_name: model }) === 1, 'the request to end');
    const text = await scrape(s);
    for (const [metric, type, queried] of VLLM_DASHBOARD) {
      expect(text, metric).toContain(`# TYPE ${metric} ${type}\n`);
      for (const suffix of queried) expect(value(text, metric + suffix, { model_name: model }), metric + suffix).toBeDefined();
    }
    expect(value(text, 'vllm:request_success_total', { model_name: model, finished_reason: 'length' })).toBe(1);
    expect(text).not.toMatch(/[{,]model="/);
  });
});

const promtool = spawnSync('promtool', ['--version']).status === 0;
const SKIP_PROMTOOL = promtool ? '' : '(skipped: promtool is not installed; the Debian package `prometheus` has it)';

describe.skipIf(!promtool)(`promtool check metrics ${SKIP_PROMTOOL}`, () => {
  const check = (text: string) => {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    return { status: r.status, lines: `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '') };
  };

  it("passes with no warning on our names, and warns only of the colons in vLLM's", async () => {
    for (const names of ['pie', 'vllm'] as const) {
      const { s, model } = await served(names);
      expect((await post(s.url, '/v1/chat/completions', { model, messages: user, max_tokens: 3 })).status).toBe(200);
      expect((await post(s.url, '/v1/completions', { model, prompt: 'Hi', max_tokens: 2, stream: true })).status).toBe(200);
      const { status, lines } = check(await scrape(s));
      if (names === 'pie') {
        expect(lines).toEqual([]);
        expect(status).toBe(0);
      } else {
        expect(lines.length).toBeGreaterThan(0);
        for (const line of lines) expect(line).toMatch(/^vllm:[a-z0-9_:]+ metric names should not contain ':'$/);
      }
    }
  });
});
