/**
 * The gateway's Prometheus metrics, on a registry of its own (never the
 * global one, so tests and several servers in one process do not collide).
 *
 * Three kinds of numbers:
 * - pushed by the gateway as requests happen (HTTP counts, TTFT, tokens);
 * - observed per engine step through `Engine.onStep` (batch size);
 * - read from `Engine.stats()` / `InferletHost.stats()` at scrape time, in
 *   `collect()` callbacks, so they cost nothing between scrapes.
 *
 * Names follow Prometheus conventions (`pie_` prefix, base units, counters
 * end in `_total`) and mirror vLLM's where one exists, minus the colon.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine, EngineStats, StepStats } from '../engine/index.ts';

/*
 * Bucket boundaries copied from vLLM so dashboards built for vLLM read ours
 * unchanged: vllm/v1/metrics/buckets.py (vllm-project/vllm main, commit
 * 139b1c3f17720f4bb6865309f365e6b1f1607a45: TIME_TO_FIRST_TOKEN_BUCKETS,
 * INTER_TOKEN_LATENCY_BUCKETS, REQUEST_LATENCY_BUCKETS, ITERATION_TOKENS_BUCKETS);
 * the same lists stood inline in vllm/v1/metrics/loggers.py
 * (PrometheusStatLogger) before they were moved there.
 */
export const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
export const INTER_TOKEN_LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
export const E2E_LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
const BATCH_TOKENS_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const MASK_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];
// Streaming responses keep a request open for minutes, hence the long tail.
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export interface GatewayMetricsOptions {
  engines: Engine[];
  host?: { stats(): { running: number } };
  /** Node process metrics (CPU, memory, event loop, GC). Default true. */
  collectDefaults?: boolean;
}

type Model = 'model';

const sum = (stats: EngineStats[], pick: (s: EngineStats) => number): number => stats.reduce((a, s) => a + pick(s), 0);

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly contentType: string;

  private readonly engines: Engine[];
  private readonly hooks: Array<{ engine: Engine; previous: Engine['onStep']; hook: (s: StepStats) => void }> = [];
  private closed = false;

  private readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  private readonly httpDuration: Histogram<'route' | 'method'>;
  private readonly httpInFlight: Gauge<'method'>;
  private readonly ttft: Histogram<Model>;
  private readonly itl: Histogram<Model>;
  private readonly e2e: Histogram<Model>;
  private readonly promptTokens: Counter<Model>;
  private readonly generationTokens: Counter<Model>;
  private readonly requestSuccess: Counter<'model' | 'finished_reason'>;

  constructor(options: GatewayMetricsOptions) {
    const registers = [this.registry];
    this.engines = options.engines;
    this.contentType = this.registry.contentType;
    if (options.collectDefaults !== false) collectDefaultMetrics({ register: this.registry, prefix: 'pie_' });

    this.httpRequests = new Counter({ name: 'pie_http_requests_total', help: 'HTTP requests answered.', labelNames: ['route', 'method', 'status'], registers });
    this.httpDuration = new Histogram({ name: 'pie_http_request_duration_seconds', help: 'HTTP request duration, until the last byte.', labelNames: ['route', 'method'], buckets: HTTP_BUCKETS, registers });
    // By method: the route is known only once a request has been routed.
    this.httpInFlight = new Gauge({ name: 'pie_http_requests_in_flight', help: 'HTTP requests being handled, by method.', labelNames: ['method'], registers });

    const model = ['model'] as const;
    this.ttft = new Histogram({ name: 'pie_time_to_first_token_seconds', help: 'Time to first token.', labelNames: model, buckets: TTFT_BUCKETS, registers });
    this.itl = new Histogram({ name: 'pie_inter_token_latency_seconds', help: 'Time between consecutive output tokens.', labelNames: model, buckets: INTER_TOKEN_LATENCY_BUCKETS, registers });
    this.e2e = new Histogram({ name: 'pie_e2e_request_latency_seconds', help: 'End-to-end request latency.', labelNames: model, buckets: E2E_LATENCY_BUCKETS, registers });
    this.promptTokens = new Counter({ name: 'pie_prompt_tokens_total', help: 'Prompt tokens of finished requests.', labelNames: model, registers });
    this.generationTokens = new Counter({ name: 'pie_generation_tokens_total', help: 'Generated tokens of finished requests.', labelNames: model, registers });
    this.requestSuccess = new Counter({ name: 'pie_request_success_total', help: 'Finished requests by finish reason.', labelNames: ['model', 'finished_reason'], registers });

    const batchSize = new Histogram({ name: 'pie_batch_size', help: 'Sequences (rows) per engine step.', labelNames: model, buckets: BATCH_SIZE_BUCKETS, registers });
    const batchTokens = new Histogram({ name: 'pie_batch_tokens', help: 'Tokens per engine step.', labelNames: model, buckets: BATCH_TOKENS_BUCKETS, registers });
    const maskTime = new Histogram({
      name: 'pie_grammar_mask_seconds',
      help: "Time an engine step spent computing its constrained rows' grammar masks (before the forward pass for masks the driver applies, during it for the others).",
      labelNames: model,
      buckets: MASK_BUCKETS,
      registers,
    });
    for (const engine of this.engines) {
      const previous = engine.onStep;
      const labels = { model: engine.model.name };
      const hook = (s: StepStats): void => {
        previous?.(s);
        if (this.closed) return;
        batchSize.observe(labels, s.rows);
        batchTokens.observe(labels, s.tokens);
        if (s.constrained > 0) maskTime.observe(labels, s.maskMs / 1000);
      };
      engine.onStep = hook;
      this.hooks.push({ engine, previous, hook });
    }

    const pages = (l: EngineStats[]) => ({ inUse: sum(l, (s) => s.pages.inUse), total: sum(l, (s) => s.pages.total) });
    this.engineGauge('pie_num_requests_running', 'Engine sequences running.', (l) => sum(l, (s) => s.running));
    this.engineGauge('pie_num_requests_waiting', 'Engine sequences waiting for pages or a slot.', (l) => sum(l, (s) => s.waiting));
    this.engineGauge('pie_kv_pages_in_use', 'KV pages held by sequences or snapshots.', (l) => pages(l).inUse);
    this.engineGauge('pie_kv_pages_total', 'KV pages in the pool.', (l) => pages(l).total);
    this.engineGauge('pie_kv_cache_usage_perc', 'Fraction of KV pages in use (0 to 1).', (l) => {
      const p = pages(l);
      return p.total ? p.inUse / p.total : 0;
    });
    this.engineGauge('pie_snapshots', 'Named snapshots held.', (l) => sum(l, (s) => s.snapshots));
    this.engineCounter('pie_prefix_cache_hits_total', 'Prefix cache page hits.', (s) => s.prefixCache.hits);
    this.engineCounter('pie_prefix_cache_misses_total', 'Prefix cache page misses.', (s) => s.prefixCache.misses);
    this.engineCounter('pie_preemptions_total', 'Sequences preempted for lack of KV pages.', (s) => s.preemptions);
    this.engineCounter('pie_constrained_requests_total', 'Generations constrained by a grammar (structured outputs).', (s) => s.grammar.constrained);
    this.engineCounter('pie_grammar_compiles_total', 'Grammars compiled.', (s) => s.grammar.compiled);
    this.engineCounter('pie_grammar_cache_hits_total', 'Grammars served from the compiled-grammar cache.', (s) => s.grammar.cacheHits);
    this.engineCounter('pie_grammar_refused_total', 'Grammars refused (invalid, unsupported or too slow to compile).', (s) => s.grammar.refused);
    this.engineCounter('pie_sampling_head_rows_total', "Sampled tokens drawn from the graph's sampling head (candidates and tail draws).", (s) => s.sampling.headRows);
    this.engineCounter('pie_sampling_full_rows_total', 'Sampled tokens drawn from their full distribution on the host: rows the head could not decide (recomputed one step later), top-k beyond the head, or the head turned off.', (s) => s.sampling.fullRows);

    const host = options.host;
    if (host) {
      new Gauge({
        name: 'pie_inferlets_running',
        help: 'Inferlet invocations running.',
        registers,
        collect() {
          this.set(host.stats().running);
        },
      });
    }
  }

  requestStarted(method: string): void {
    this.httpInFlight.inc({ method });
  }

  requestEnded(method: string): void {
    this.httpInFlight.dec({ method });
  }

  requestDone(labels: { route: string; method: string; status: number }, seconds: number): void {
    this.httpRequests.inc({ route: labels.route, method: labels.method, status: String(labels.status) });
    this.httpDuration.observe({ route: labels.route, method: labels.method }, seconds);
  }

  timeToFirstToken(model: string, seconds: number): void {
    this.ttft.observe({ model }, seconds);
  }

  interTokenLatency(model: string, seconds: number): void {
    this.itl.observe({ model }, seconds);
  }

  e2eLatency(model: string, seconds: number): void {
    this.e2e.observe({ model }, seconds);
  }

  tokens(model: string, prompt: number, generation: number): void {
    this.promptTokens.inc({ model }, prompt);
    this.generationTokens.inc({ model }, generation);
  }

  requestFinished(model: string, finishReason: string): void {
    this.requestSuccess.inc({ model, finished_reason: finishReason });
  }

  /** The exposition text; read it with `contentType`. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** Unhooks the engines (leaving any handler set after ours in place) and empties the registry. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const { engine, previous, hook } of this.hooks.splice(0)) {
      if (engine.onStep === hook) engine.onStep = previous;
    }
    this.registry.clear();
  }

  /** Engine stats grouped by served model name, so two engines serving one name add up instead of overwriting. */
  private statsByModel(): Map<string, EngineStats[]> {
    const out = new Map<string, EngineStats[]>();
    for (const e of this.engines) {
      const list = out.get(e.model.name) ?? [];
      list.push(e.stats());
      out.set(e.model.name, list);
    }
    return out;
  }

  private engineGauge(name: string, help: string, value: (stats: EngineStats[]) => number): void {
    const statsByModel = () => this.statsByModel();
    new Gauge({
      name,
      help,
      labelNames: ['model'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [model, stats] of statsByModel()) this.set({ model }, value(stats));
      },
    });
  }

  /*
   * The engine's counters are cumulative already. prom-client's Counter has
   * no set(), but reset() followed by inc(total) inside collect() renders the
   * engine's exact value each scrape with `# TYPE ... counter`, and never
   * double counts (unlike inc(delta), which would need the last value kept).
   */
  private engineCounter(name: string, help: string, pick: (s: EngineStats) => number): void {
    const statsByModel = () => this.statsByModel();
    new Counter({
      name,
      help,
      labelNames: ['model'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [model, stats] of statsByModel()) this.inc({ model }, sum(stats, pick));
      },
    });
  }
}
