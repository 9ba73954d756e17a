/**
 * The gateway's Prometheus metrics, on a registry of its own (never the
 * global one, so tests and several servers in one process do not collide).
 *
 * Four kinds of numbers:
 * - pushed by the gateway as HTTP requests come and go (counts, durations);
 * - pushed per request as it runs (`request()`): time to first token,
 *   inter-token latency and token counters inside the engine step that
 *   produced the tokens, so a long stream shows steady tokens/s and a request
 *   that hangs has its TTFT; the phases of each generation when it ends;
 *   latency, finish reasons and per-request histograms when the request ends;
 * - observed per engine step through `Engine.addStepListener` (batch size);
 * - read from `Engine.stats()` / `InferletHost.stats()` at scrape time, in
 *   `collect()` callbacks, so they cost nothing between scrapes.
 *
 * Names follow Prometheus conventions (`pie_` prefix, base units, only
 * counters end in `_total`: `promtool check metrics` passes) and mirror
 * vLLM's where one exists. With `names: 'vllm'` those take vLLM's own names
 * and every model label is `model_name`, so a Grafana dashboard built for
 * vLLM reads them unchanged (promtool then warns only about the colons of
 * vLLM's names).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineStats, StepStats } from '../engine/index.ts';
import type { GenerationTiming, InvocationObserver } from '../runtime/host/invocation.ts';
import type { ServedModel } from '../runtime/host/port.ts';
import type { FinishReason } from './finish-reasons.ts';

/*
 * Bucket boundaries of vLLM, so that dashboards built for vLLM read ours
 * unchanged: vllm/v1/metrics/buckets.py (vllm-project/vllm main, commit
 * 139b1c3f17720f4bb6865309f365e6b1f1607a45: TIME_TO_FIRST_TOKEN_BUCKETS,
 * INTER_TOKEN_LATENCY_BUCKETS, REQUEST_LATENCY_BUCKETS, ITERATION_TOKENS_BUCKETS);
 * the same lists stood inline in vllm/v1/metrics/loggers.py
 * (PrometheusStatLogger) before they were moved there. Inter-token and request
 * latencies get finer buckets below vLLM's lowest: a fast model's every token
 * (and an idle server's every queue time) fell in the lowest one. Quantiles
 * over the union of boundaries still compare with vLLM's.
 */
export const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
export const INTER_TOKEN_LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
export const E2E_LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
const BATCH_TOKENS_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/** vLLM's buckets of the `n` request parameter. */
const N_BUCKETS = [1, 2, 5, 10, 20];
const MASK_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];
// Streaming responses keep a request open for minutes, hence the long tail.
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** 1, 2, 5, 10, 20, 50, … up to `max` (vLLM's build_1_2_5_buckets, for token counts up to the context length). */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let scale = 1; ; scale *= 10) {
    for (const m of [1, 2, 5]) {
      if (m * scale > max) return out.length > 0 ? out : [1];
      out.push(m * scale);
    }
  }
}

/** Which names the metrics take: ours, or vLLM's where vLLM has the metric. */
export type MetricNames = 'pie' | 'vllm';

/**
 * Our name → vLLM's, for the metrics vLLM has, as vllm/v1/metrics/loggers.py
 * registers them (its counters are exposed with `_total`).
 */
export const VLLM_NAMES: Readonly<Record<string, string>> = {
  pie_time_to_first_token_seconds: 'vllm:time_to_first_token_seconds',
  pie_inter_token_latency_seconds: 'vllm:inter_token_latency_seconds',
  pie_e2e_request_latency_seconds: 'vllm:e2e_request_latency_seconds',
  pie_prompt_tokens_total: 'vllm:prompt_tokens_total',
  pie_generation_tokens_total: 'vllm:generation_tokens_total',
  pie_request_success_total: 'vllm:request_success_total',
  pie_request_prompt_tokens: 'vllm:request_prompt_tokens',
  pie_request_generation_tokens: 'vllm:request_generation_tokens',
  pie_request_max_num_generation_tokens: 'vllm:request_max_num_generation_tokens',
  pie_request_params_max_tokens: 'vllm:request_params_max_tokens',
  pie_request_params_n: 'vllm:request_params_n',
  pie_request_queue_time_seconds: 'vllm:request_queue_time_seconds',
  pie_request_prefill_time_seconds: 'vllm:request_prefill_time_seconds',
  pie_request_decode_time_seconds: 'vllm:request_decode_time_seconds',
  pie_request_inference_time_seconds: 'vllm:request_inference_time_seconds',
  pie_request_time_per_output_token_seconds: 'vllm:request_time_per_output_token_seconds',
  pie_num_requests_running: 'vllm:num_requests_running',
  pie_num_requests_waiting: 'vllm:num_requests_waiting',
  pie_kv_cache_usage_perc: 'vllm:kv_cache_usage_perc',
  pie_prefix_cache_queries_total: 'vllm:prefix_cache_queries_total',
  pie_prefix_cache_hits_total: 'vllm:prefix_cache_hits_total',
  pie_preemptions_total: 'vllm:num_preemptions_total',
};

export interface GatewayMetricsOptions {
  engines: ServedModel[];
  host?: { stats(): { running: number } };
  /** Brings the engines' and host's stats up to date before a scrape (the engine thread's are read by message). */
  refresh?: () => Promise<void>;
  /** Node process metrics (CPU, memory, event loop, GC). Default true. */
  collectDefaults?: boolean;
  /** 'vllm': vLLM's names and the `model_name` label (see above). Default 'pie'. */
  names?: MetricNames;
}

/** Request parameters vLLM keeps histograms of (absent: the request did not say, or the route has none). */
export interface RequestParams {
  maxTokens?: number;
  n?: number;
}

/** What is known of a request once it has ended. */
export interface RequestEnd {
  /** One per choice the answer gave; `abort` or `error` for a request that was cancelled or failed. */
  reasons: FinishReason[];
  promptTokens: number;
  generationTokens: number;
  /** The most tokens any one of its generations produced. */
  maxGenerationTokens: number;
  params: RequestParams;
}

const sum = (stats: EngineStats[], pick: (s: EngineStats) => number): number => stats.reduce((a, s) => a + pick(s), 0);

type RequestHistogram =
  | 'ttft'
  | 'itl'
  | 'e2e'
  | 'requestPromptTokens'
  | 'requestGenerationTokens'
  | 'maxNumGenerationTokens'
  | 'maxTokens'
  | 'n'
  | 'queue'
  | 'prefill'
  | 'decode'
  | 'inference'
  | 'tpot';

/** The per-request metrics, bound to one model's label so that a token costs no label lookup. */
type RequestSeries = Record<RequestHistogram, Histogram.Internal<string>> & {
  promptTokens: Counter.Internal;
  generationTokens: Counter.Internal;
  success: (reason: FinishReason) => void;
};

/**
 * One request's metrics as it runs: an invocation's observer. Tokens are
 * counted, and the first one's TTFT observed, the moment the engine step
 * produces them; each generation's phases when it ends; the rest at `end`.
 */
export class RequestMetrics implements InvocationObserver {
  private readonly series: RequestSeries;
  private readonly startedAt: number;
  private firstTokenSeen = false;
  /** One of its generations ran out of tokens (the reason of an answer that gives none). */
  cutOff = false;
  /**
   * Timings held back while the request may still run again (`hold`): a run
   * lost with its worker is not the request's, and `restart` drops them.
   * Token counts are not held: those tokens were computed.
   */
  private held: Array<[Histogram.Internal<string>, number]> | null = null;

  constructor(series: RequestSeries, startedAt: number) {
    this.series = series;
    this.startedAt = startedAt;
  }

  /** Holds timings back until `end` or `release` (the request may run again). */
  hold(): void {
    this.held ??= [];
  }

  /** Records what was held back, and from now on records as it comes. */
  release(): void {
    const held = this.held;
    if (!held) return; // called for every streamed event: nothing to do once released
    this.held = null;
    for (const [h, v] of held) h.observe(v);
  }

  /** The request runs again (its run was lost): what that run timed is dropped; its first token and cut-off are the new run's. */
  restart(): void {
    if (this.held) this.held = [];
    this.firstTokenSeen = false;
    this.cutOff = false;
  }

  private observe(h: Histogram.Internal<string>, value: number): void {
    if (this.held) this.held.push([h, value]);
    else h.observe(value);
  }

  tokens(count: number, gapMs: number | null, now: number): void {
    const s = this.series;
    if (!this.firstTokenSeen) {
      this.firstTokenSeen = true;
      this.observe(s.ttft, (now - this.startedAt) / 1000);
    }
    if (gapMs !== null) this.observe(s.itl, gapMs / 1000);
    s.generationTokens.inc(count);
  }

  prompt(added: number): void {
    this.series.promptTokens.inc(added);
  }

  /** vLLM's phases of a request: waiting, then prefill up to the first token, then decode up to the last. */
  generation(g: GenerationTiming): void {
    const s = this.series;
    if (g.finishReason === 'length') this.cutOff = true;
    if (g.scheduledAt === 0) return; // cancelled while it waited: it has no phases
    this.observe(s.queue, (g.scheduledAt - g.queuedAt) / 1000);
    if (g.firstTokenAt === 0) return;
    this.observe(s.prefill, (g.firstTokenAt - g.scheduledAt) / 1000);
    this.observe(s.decode, (g.lastTokenAt - g.firstTokenAt) / 1000);
    this.observe(s.inference, (g.lastTokenAt - g.scheduledAt) / 1000);
    // One token has no time per output token (vLLM records a 0, which drags the quantiles down).
    if (g.completionTokens > 1) this.observe(s.tpot, (g.lastTokenAt - g.firstTokenAt) / 1000 / (g.completionTokens - 1));
  }

  end(e: RequestEnd, now = performance.now()): void {
    this.release();
    const s = this.series;
    s.e2e.observe((now - this.startedAt) / 1000);
    for (const reason of e.reasons) s.success(reason);
    s.requestPromptTokens.observe(e.promptTokens);
    s.requestGenerationTokens.observe(e.generationTokens);
    s.maxNumGenerationTokens.observe(e.maxGenerationTokens);
    if (e.params.maxTokens !== undefined) s.maxTokens.observe(e.params.maxTokens);
    if (e.params.n !== undefined) s.n.observe(e.params.n);
  }
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly contentType: string;
  readonly names: MetricNames;

  private readonly engines: ServedModel[];
  private readonly refresh: (() => Promise<void>) | undefined;
  /** What removes our step listeners from the engines. */
  private readonly unhooks: Array<() => void> = [];
  private closed = false;
  /** The label naming the served model: `model`, or vLLM's `model_name`. */
  private readonly modelLabel: string;
  private readonly seriesByModel = new Map<string, RequestSeries>();

  private readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  private readonly httpDuration: Histogram<'route' | 'method'>;
  private readonly httpInFlight: Gauge<'method'>;
  private readonly histograms: Record<RequestHistogram, Histogram<string>>;
  private readonly tokenCounters: { prompt: Counter<string>; generation: Counter<string> };
  private readonly success: Counter<string>;

  constructor(options: GatewayMetricsOptions) {
    const registers = [this.registry];
    this.engines = options.engines;
    this.refresh = options.refresh;
    this.names = options.names ?? 'pie';
    this.modelLabel = this.names === 'vllm' ? 'model_name' : 'model';
    this.contentType = this.registry.contentType;
    if (options.collectDefaults !== false) {
      collectDefaultMetrics({ register: this.registry, prefix: 'pie_' });
      // Gauges named like counters (promtool warns); `pie_nodejs_active_*{type}` carry the same counts by type.
      for (const what of ['handles', 'requests', 'resources']) this.registry.removeSingleMetric(`pie_nodejs_active_${what}_total`);
    }

    this.httpRequests = new Counter({ name: 'pie_http_requests_total', help: 'HTTP requests answered.', labelNames: ['route', 'method', 'status'], registers });
    this.httpDuration = new Histogram({ name: 'pie_http_request_duration_seconds', help: 'HTTP request duration, until the last byte.', labelNames: ['route', 'method'], buckets: HTTP_BUCKETS, registers });
    // By method: the route is known only once a request has been routed.
    this.httpInFlight = new Gauge({ name: 'pie_http_requests_in_flight', help: 'HTTP requests being handled, by method.', labelNames: ['method'], registers });

    const model = [this.modelLabel];
    const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name: this.name(name), help, labelNames: model, buckets, registers });
    const counter = (name: string, help: string) => new Counter({ name: this.name(name), help, labelNames: model, registers });
    const tokenBuckets = buckets125(Math.max(1, ...this.engines.map((e) => e.model.config.maxPositionEmbeddings)));
    this.tokenCounters = {
      prompt: counter('pie_prompt_tokens_total', "Prompt tokens, counted when a generation's prompt has been read (at its first token)."),
      generation: counter('pie_generation_tokens_total', 'Generated tokens, counted as they are produced.'),
    };
    this.histograms = {
      ttft: histogram('pie_time_to_first_token_seconds', 'Time to first token, observed when it is produced.', TTFT_BUCKETS),
      itl: histogram('pie_inter_token_latency_seconds', 'Time between consecutive output tokens of a generation, observed as each is produced.', INTER_TOKEN_LATENCY_BUCKETS),
      e2e: histogram('pie_e2e_request_latency_seconds', 'End-to-end request latency.', E2E_LATENCY_BUCKETS),
      requestPromptTokens: histogram('pie_request_prompt_tokens', 'Prompt tokens per finished request.', tokenBuckets),
      requestGenerationTokens: histogram('pie_request_generation_tokens', 'Generated tokens per finished request (all its choices).', tokenBuckets),
      maxNumGenerationTokens: histogram('pie_request_max_num_generation_tokens', 'The most tokens one generation of a finished request produced.', tokenBuckets),
      maxTokens: histogram('pie_request_params_max_tokens', 'The max_tokens a finished request asked for (when it gave one).', tokenBuckets),
      n: histogram('pie_request_params_n', 'The n (choices) a finished request asked for.', N_BUCKETS),
      queue: histogram('pie_request_queue_time_seconds', 'Time a generation waited before its first engine step.', E2E_LATENCY_BUCKETS),
      prefill: histogram('pie_request_prefill_time_seconds', "Time from a generation's first engine step to its first token.", E2E_LATENCY_BUCKETS),
      decode: histogram('pie_request_decode_time_seconds', "Time from a generation's first token to its last.", E2E_LATENCY_BUCKETS),
      inference: histogram('pie_request_inference_time_seconds', "Time from a generation's first engine step to its last token.", E2E_LATENCY_BUCKETS),
      tpot: histogram('pie_request_time_per_output_token_seconds', 'Decode time per output token after the first, per generation of two tokens or more.', INTER_TOKEN_LATENCY_BUCKETS),
    };
    this.success = new Counter({
      name: this.name('pie_request_success_total'),
      help: "Finished requests by the API's finish reason (stop, length, tool_calls; abort, error), one per choice.",
      labelNames: [this.modelLabel, 'finished_reason'],
      registers,
    });

    const batchSize = histogram('pie_batch_size', 'Sequences (rows) per engine step.', BATCH_SIZE_BUCKETS);
    const batchTokens = histogram('pie_batch_tokens', 'Tokens per engine step.', BATCH_TOKENS_BUCKETS);
    const maskTime = histogram(
      'pie_grammar_mask_seconds',
      "Time an engine step spent computing its constrained rows' grammar masks (before the forward pass for masks the driver applies, during it for the others).",
      MASK_BUCKETS,
    );
    for (const engine of this.engines) {
      const labels = this.labels(engine.model.name);
      const listener = (s: StepStats): void => {
        batchSize.observe(labels, s.rows);
        batchTokens.observe(labels, s.tokens);
        if (s.constrained > 0) maskTime.observe(labels, s.maskMs / 1000);
      };
      this.unhooks.push(engine.addStepListener(listener));
    }

    const pages = (l: EngineStats[]) => ({ inUse: sum(l, (s) => s.pages.inUse), total: sum(l, (s) => s.pages.total) });
    this.engineGauge('pie_num_requests_running', 'Engine sequences running.', (l) => sum(l, (s) => s.running));
    this.engineGauge('pie_num_requests_waiting', 'Engine sequences waiting for pages or a slot.', (l) => sum(l, (s) => s.waiting));
    this.engineGauge('pie_kv_pages_in_use', 'KV pages held by sequences or snapshots.', (l) => pages(l).inUse);
    this.engineGauge('pie_kv_pages_capacity', 'KV pages in the pool.', (l) => pages(l).total);
    this.engineGauge('pie_kv_cache_usage_perc', 'Fraction of KV pages in use (0 to 1).', (l) => {
      const p = pages(l);
      return p.total ? p.inUse / p.total : 0;
    });
    this.engineGauge('pie_snapshots', 'Named snapshots held.', (l) => sum(l, (s) => s.snapshots));
    this.engineCounter('pie_prefix_cache_queries_total', 'Prompt tokens looked up in the prefix cache when their work was admitted.', (s) => s.prefixCache.queryTokens);
    this.engineCounter('pie_prefix_cache_hits_total', 'Prompt tokens served from the prefix cache.', (s) => s.prefixCache.hitTokens);
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

  /** The metrics of one request to `model` that started at `startedAt` (performance.now()). */
  startRequest(model: string, startedAt = performance.now()): RequestMetrics {
    return new RequestMetrics(this.seriesOf(model), startedAt);
  }

  /** The exposition text; read it with `contentType`. */
  async metrics(): Promise<string> {
    await this.refresh?.();
    return this.registry.metrics();
  }

  /** Unhooks the engines (leaving any handler set after ours in place) and empties the registry. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const unhook of this.unhooks.splice(0)) unhook();
    this.registry.clear();
  }

  private name(pie: string): string {
    return this.names === 'vllm' ? (VLLM_NAMES[pie] ?? pie) : pie;
  }

  private labels(model: string): Record<string, string> {
    return { [this.modelLabel]: model };
  }

  /** The request metrics bound to one model's label (made once per model). */
  private seriesOf(model: string): RequestSeries {
    let s = this.seriesByModel.get(model);
    if (s) return s;
    const labels = this.labels(model);
    const bound = Object.entries(this.histograms).map(([key, h]) => [key, h.labels(labels)]);
    s = {
      ...(Object.fromEntries(bound) as Record<RequestHistogram, Histogram.Internal<string>>),
      promptTokens: this.tokenCounters.prompt.labels(labels),
      generationTokens: this.tokenCounters.generation.labels(labels),
      success: (reason) => this.success.inc({ ...labels, finished_reason: reason }),
    };
    this.seriesByModel.set(model, s);
    return s;
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
    const labels = (model: string) => this.labels(model);
    new Gauge({
      name: this.name(name),
      help,
      labelNames: [this.modelLabel],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [model, stats] of statsByModel()) this.set(labels(model), value(stats));
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
    const labels = (model: string) => this.labels(model);
    new Counter({
      name: this.name(name),
      help,
      labelNames: [this.modelLabel],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [model, stats] of statsByModel()) this.inc(labels(model), sum(stats, pick));
      },
    });
  }
}
