/**
 * `pie serve`: listens at once (/health answers, /ready says 503), then loads
 * the models, the inferlet host, the built-in inferlets and the custom
 * routes, and attaches them. With no API key configured it binds to loopback
 * only, and says so.
 */
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, type Config } from '../config.ts';
import type { Engine } from '../engine/index.ts';
import { buildCached } from '../runtime/host/build.ts';
import type { EngineSide, HostPort } from '../runtime/host/port.ts';
import { startEngineSide } from '../startup.ts';
import { resolveKeys, tenantShares } from './auth.ts';
import { loadRoutes } from './custom-routes.ts';
import { GatewayMetrics } from './metrics.ts';
import { ResponseStore } from './response-store.ts';
import { ComponentLoader } from '../runtime/host/component-loader.ts';
import { EngineThread, EngineThreadError } from './engine-link.ts';
import { InferletRegistry } from './inferlet-registry.ts';
import { maxRunLimits } from './runs.ts';
import { Gateway, type Builtins } from './server.ts';

const BUILTIN_DIR = fileURLToPath(new URL('../../inferlets/builtin/', import.meta.url));

export interface ServeOptions {
  config: Config;
  /** Model directories, each optionally `NAME=DIR` (default: the config's model). */
  models?: string[];
  host?: string;
  port?: number;
  log?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Engines already started (tests): served instead of `models`, and left open by close(). */
  engines?: Engine[];
}

export interface Serving {
  gateway: Gateway;
  /** The base URL, e.g. http://127.0.0.1:8080. */
  url: string;
  /** Resolves once the API is served (rejects if loading failed). */
  loaded: Promise<void>;
  /** Resolves, with why, if the server can serve no more (its engine thread died); it is then not ready, and should be restarted. */
  stopped: Promise<string>;
  close(): Promise<void>;
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

/** Builds the built-in inferlets (cached by content) and loads them into the host. */
export async function loadBuiltins(host: HostPort, cacheDir: string): Promise<Builtins> {
  const load = async (name: string) => host.load(await buildCached(resolve(BUILTIN_DIR, `${name}.ts`), resolve(cacheDir, 'builds')));
  const [chat, completions, responses, tokenize] = await Promise.all([load('chat-completions'), load('completions'), load('responses'), load('tokenize')]);
  return { chat, completions, responses, tokenize };
}

/**
 * Runs each built-in once per worker on each model (a one-token request),
 * so that /ready means ready: the first request after it would otherwise pay
 * the engine's first forward pass and each guest's first run. Nothing is
 * stored, and no request is counted in the metrics (the engines' own totals,
 * such as steps, include these).
 */
export async function warmUp(host: HostPort, builtins: Builtins, models: string[], log: (line: string) => void = () => {}): Promise<void> {
  const base = { method: 'POST', params: {}, query: {}, headers: {}, id: 'warm-up', created: 0 };
  const runs = models.flatMap((model) => {
    const inputs: Array<[keyof Builtins, unknown]> = [
      ['chat', { ...base, path: '/v1/chat/completions', model, body: { model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 } }],
      ['completions', { ...base, path: '/v1/completions', model, body: { model, prompt: 'Hi', max_tokens: 1 } }],
      ['responses', { ...base, path: '/v1/responses', model, body: { model, input: 'Hi', max_output_tokens: 1, store: false }, history: null, save_as: null }],
      ['tokenize', { ...base, path: '/tokenize', model, body: { model, prompt: 'Hi' } }],
    ];
    return inputs.flatMap(([name, input]) => Array.from({ length: host.stats().workers }, () => ({ component: builtins[name], input, model })));
  });
  // A warm-up that fails or takes over a minute is said in the log and does not hold readiness back: requests will say what is wrong.
  const limits = { wallTimeMs: 60_000 };
  const failed = new Set<string>();
  await Promise.all(
    runs.map(({ component, input, model }) =>
      host
        .invoke(component, { input, models: [model], reuseInstance: true, limits })
        .result.then((r) => (r.status >= 400 ? failed.add(`${(input as { path: string }).path} on ${model}: status ${r.status}`) : undefined))
        .catch((err: Error) => failed.add(`${(input as { path: string }).path} on ${model}: ${err.message}`)),
    ),
  );
  for (const f of failed) log(`pie: warm-up request failed: ${f}`);
}

export async function serve(options: ServeOptions): Promise<Serving> {
  const { config } = options;
  const log = options.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const keys = resolveKeys(config.keys, options.env ?? process.env, config.server.apiKeyEnv);
  const shares = tenantShares(keys);
  let host = options.host ?? config.server.host;
  if (keys.length === 0 && !isLoopback(host)) {
    log(`pie: no API key is configured, so the server binds to 127.0.0.1 only (not ${host}); add [[keys]] or set ${config.server.apiKeyEnv || 'an API key'} to serve other hosts`);
    host = '127.0.0.1';
  } else if (keys.length === 0) {
    log('pie: no API key is configured: anyone on this machine may call the server (loopback only)');
  }
  const store = ResponseStore.open(resolve(config.root, config.server.dataDir, 'responses.sqlite'), {
    maxBytesPerTenant: config.server.responsesMaxMbPerTenant * 1024 * 1024,
    ttlSeconds: config.server.responsesTtlDays * 24 * 3600,
  });
  const cacheDir = resolve(config.root, config.inferlets.cacheDir);
  const inferlets = {
    registry: InferletRegistry.open(resolve(config.root, config.server.dataDir, 'inferlets')),
    loader: new ComponentLoader(cacheDir),
    limits: { maxBytes: config.server.inferletMaxMb * 1024 * 1024, perTenant: config.server.inferletsPerTenant },
    maxRunLimits: maxRunLimits(config),
    runLimits: { runningPerTenant: config.server.runsPerTenant, replayEvents: config.server.runReplayEvents },
  };
  const gateway = new Gateway({ keys, maxBodyBytes: config.server.maxBodyKb * 1024, store, inferlets, log });
  const port = options.port ?? config.server.port;
  const address = await gateway.listen(port, host).catch((err: NodeJS.ErrnoException) => {
    store.close();
    inferlets.registry.close();
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES') throw new ConfigError(`cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'the address is in use' : 'permission denied'}`);
    throw err;
  });
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  log(`pie: listening on ${url} (loading models)`);

  let side: EngineSide | null = null;
  let stop: (reason: string) => void = () => {};
  let lost: string | null = null;
  const stopped = new Promise<string>((r) => (stop = r));
  const loaded = (async () => {
    const sideOptions = {
      config,
      ...(options.models?.length ? { models: options.models } : {}),
      ...(options.engines ? { engines: options.engines } : {}),
      shares,
      tenants: new Set(keys.map((k) => k.tenant)).size,
      log,
    };
    // Engines started by the caller stay on its thread; otherwise they get one of their own unless the config says not.
    side = !options.engines && config.engine.ownThread ? await EngineThread.start(sideOptions) : await startEngineSide(sideOptions);
    side.onLost?.((reason) => {
      lost = reason;
      gateway.stopServing('its engine thread stopped; the server must be restarted');
      stop(reason);
    });
    const builtins = await loadBuiltins(side.host, cacheDir);
    const names = side.models.map((e) => e.model.name);
    const routes = await loadRoutes(config.routes, config.root, side.host, names, cacheDir);
    await warmUp(side.host, builtins, names, log); // before the metrics record requests: it is not traffic
    const refresh = side.refresh?.bind(side);
    const metrics = new GatewayMetrics({ engines: side.models, host: side.host, names: config.metrics.names, ...(refresh ? { refresh } : {}) });
    await gateway.attach({ host: side.host, engines: new Map(side.models.map((e) => [e.model.name, e])), snapshots: side.snapshots, metrics, log, builtins, routes });
    if (lost !== null) throw new EngineThreadError(`the engine thread stopped while the server was loading: ${lost}`);
    log(`pie: ready: ${names.join(', ')}; ${routes.length} custom route(s)${side instanceof EngineThread ? ' (engines on their own thread)' : ''}`);
  })();
  loaded.catch(() => {});

  return {
    gateway,
    url,
    loaded,
    stopped,
    async close() {
      await loaded.catch(() => {});
      await gateway.close();
      await side?.close();
      await inferlets.loader.close();
      inferlets.registry.close();
      store.close();
    },
  };
}
