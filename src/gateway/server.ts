/**
 * The HTTP gateway: Express 5 with helmet, a body limit, request ids, API
 * keys, OpenAPI validation, the OpenAI routes and the config's custom routes,
 * each served by an inferlet; one error middleware renders every error as
 * OpenAI's error JSON. It listens before the models are loaded: /health
 * answers at once, /ready and the API answer 503 until `attach`.
 *
 *   request ─► requestId ─► metrics ─► helmet ─► auth ─► json body ─► validator ─► route ─► inferlet
 *                                                  any error ─► errorHandler ─► {"error": {...}}
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import express, { Router, type ErrorRequestHandler, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import helmet from 'helmet';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import { auth, principalOf, requireScope, type ApiKey } from './auth.ts';
import { customRoutes, type LoadedRoute } from './custom-routes.ts';
import { inferletRoutes, type InferletDeps } from './inferlet-routes.ts';
import { runRoutes, Runs, type RunLimits } from './runs.ts';
import type { InstanceLimits } from '../runtime/protocol.ts';
import { ApiError, InternalServerError, InvalidRequestError, ServiceUnavailableError } from './errors.ts';
import type { Runtime } from './invoke.ts';
import { openaiRoutes } from './openai-routes.ts';
import { checkRequestShapes } from './request-shapes.ts';
import { validatorDocument } from './validator-document.ts';
import type { ResponseStore } from './response-store.ts';
import { responsesRoutes } from './responses-routes.ts';

export const OPENAPI_DOCUMENT = fileURLToPath(new URL('../../openapi/openapi.yaml', import.meta.url));

export interface Builtins {
  chat: StoredComponent;
  completions: StoredComponent;
  responses: StoredComponent;
  /** POST /tokenize and /detokenize. */
  tokenize: StoredComponent;
}

export interface GatewayOptions {
  keys: ApiKey[];
  maxBodyBytes: number;
  store: ResponseStore;
  /** Uploaded components (POST /v1/inferlets) and the caps on what their runs may ask for. */
  inferlets: InferletDeps & { maxRunLimits: InstanceLimits; runLimits?: Partial<RunLimits> };
  log?: (line: string) => void;
}

/** Everything the API needs once the models are loaded. */
export interface Loaded extends Runtime {
  builtins: Builtins;
  routes: LoadedRoute[];
}

/** Gives each request an id (the caller's X-Request-Id if it sent one), echoed in the response. */
export function requestId(): RequestHandler {
  return function assignRequestId(req, res, next) {
    const given = req.get('x-request-id');
    const id = given && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.setHeader('x-request-id', id);
    next();
  };
}

type ValidatorError = { path?: string; message?: string; errorCode?: string };

/** Reads the validator's errors (express-openapi-validator) as one 400 naming the field. */
function fromValidator(err: { status?: number; errors?: ValidatorError[]; message?: string }): ApiError {
  if (err.status === 415) return new ApiError(415, 'invalid_request_error', err.message ?? 'unsupported media type', { code: 'unsupported_media_type' });
  if (err.status === 405) return new ApiError(405, 'invalid_request_error', err.message ?? 'method not allowed');
  // Inside a union every branch reports (tagged unions report only their tag's branch: validator-document.ts).
  // The most telling error is an unknown field, then the deepest that is not a union's summary (the branch that
  // got furthest: an array of items whose item is wrong, rather than "must be string").
  const errors = err.errors ?? [];
  const summary = (e: ValidatorError) => /^(oneOf|anyOf)\./.test(e.errorCode ?? '');
  const depth = (e: ValidatorError) => (e.path ?? '').split('/').length;
  const deepest = errors.filter((e) => !summary(e)).sort((a, b) => depth(b) - depth(a))[0];
  const first = errors.find((e) => e.errorCode?.startsWith('additionalProperties')) ?? deepest ?? errors[0];
  const path = (first?.path ?? '').replace(/^\/?(body|query|params|path)\/?/, '');
  const param = path ? path.replace(/\//g, '.') : null;
  if (first?.errorCode?.startsWith('additionalProperties')) {
    return new InvalidRequestError(`Unrecognized request argument supplied: ${param}`, param, 'unknown_parameter');
  }
  const detail = first?.message ?? err.message ?? 'invalid request';
  return new InvalidRequestError(param && !detail.includes(param) ? `Invalid value for '${param}': ${detail}` : detail, param, 'invalid_value');
}

/**
 * A client error raised before a route runs (body reading, path decoding):
 * an unsupported charset or content-encoding (415), a body that does not
 * decode, a path with a malformed percent-escape (400). Its status as raised,
 * OpenAI's shape, no stack in the log: nothing went wrong on the server.
 */
function clientError(err: { status: number; type?: string; message?: string }): ApiError {
  const detail = err.message ?? 'bad request';
  if (err.type === 'charset.unsupported') return new ApiError(415, 'invalid_request_error', `The request body's charset is not supported (${detail}): send JSON in UTF-8.`, { code: 'unsupported_media_type' });
  if (err.type === 'encoding.unsupported') return new ApiError(415, 'invalid_request_error', `The request body's content-encoding is not supported (${detail}): send it plain, gzip, deflate or br.`, { code: 'unsupported_media_type' });
  if (/decode param/i.test(detail)) return new InvalidRequestError(`The request path does not decode: ${detail}.`, null, 'invalid_path');
  return new ApiError(err.status, 'invalid_request_error', `The request could not be read: ${detail}.`);
}

export function errorHandler({ log }: { log: (line: string) => void }): ErrorRequestHandler {
  return function renderError(err: unknown, req: Request, res: Response, _next: NextFunction): void {
    let e: ApiError;
    const any = err as { type?: string; status?: number; errors?: unknown[]; message?: string };
    if (err instanceof ApiError) e = err;
    else if (any?.type === 'entity.too.large') e = new ApiError(413, 'invalid_request_error', `The request body is larger than the server accepts (${any.message}).`, { code: 'request_too_large' });
    else if (any?.type === 'entity.parse.failed') e = new InvalidRequestError('We could not parse the JSON body of your request: it is not valid JSON.', null, 'invalid_json');
    else if (any?.status && any.status < 500 && Array.isArray(any.errors)) e = fromValidator(any as Parameters<typeof fromValidator>[0]);
    else if (typeof any?.status === 'number' && any.status >= 400 && any.status < 500) e = clientError(any as { status: number; type?: string; message?: string });
    else {
      log(`[${res.locals.requestId}] ${req.method} ${req.path}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      e = new InternalServerError('The server had an error while processing your request.');
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(e.status).json(e.toJSON());
  };
}

/** Sends one invalid request per validated route through `validator`, on a private loopback server, so that it compiles its schemas now. */
async function warmValidator(validator: RequestHandler[]): Promise<void> {
  const app = express();
  app.use(express.json());
  app.use(validator);
  app.use(((_err, _req, res, _next) => void res.status(400).end()) as ErrorRequestHandler);
  const server = createServer(app);
  try {
    // Loopback, any address family it has; a machine without one skips the warm-up rather than failing to start.
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, 'localhost', resolve));
    const { port, family, address } = server.address() as AddressInfo;
    const host = family === 'IPv6' ? `[${address}]` : address;
    for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/responses', '/tokenize', '/detokenize']) {
      const res = await fetch(`http://${host}:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', signal: AbortSignal.timeout(30_000) });
      await res.arrayBuffer();
    }
  } catch {
    // Not warm: the first request compiles the schemas instead.
  } finally {
    server.close();
  }
}

export class Gateway {
  readonly app = express();
  private loaded: Loaded | null = null;
  private api: Router | null = null;
  private server: Server | null = null;
  private readonly options: GatewayOptions;
  private readonly log: (line: string) => void;
  private closing = false;
  /** Runs of uploaded components (cancelled when the server closes). */
  private runs: Runs | null = null;
  /** Why it can serve no more (its engine thread died), if it cannot. */
  private broken: string | null = null;
  /** Requests being answered (not counting /health and /ready). */
  private inFlight = 0;

  constructor(options: GatewayOptions) {
    this.options = options;
    this.log = options.log ?? ((l) => process.stderr.write(l + '\n'));
    const app = this.app;
    app.disable('x-powered-by');
    app.set('etag', false);
    app.use(requestId());
    app.use(this.countRequests());
    app.use((req, _res, next) => {
      // Shutting down, or unable to serve (then /ready says so too): /health answers, and /metrics while it can.
      if (req.path === '/health') return next();
      if (this.closing) return next(new ServiceUnavailableError('The server is shutting down.'));
      if (this.broken !== null && req.path !== '/metrics') return next(new ServiceUnavailableError(`The server cannot serve requests: ${this.broken}.`));
      next();
    });
    app.use(helmet());
    app.get('/health', (_req, res) => void res.json({ status: 'ok' }));
    app.get('/ready', (_req, res) => {
      // Unauthenticated: it says ready or not, and nothing about what is served (GET /v1/models, with a key, does).
      if (this.loaded) res.json({ status: 'ready' });
      else res.status(503).json(new ServiceUnavailableError('The server is loading its models.').toJSON());
    });
    app.use(auth({ keys: options.keys }));
    app.get('/metrics', async (_req, res) => {
      requireScope(principalOf(res), 'metrics');
      const rt = this.runtime();
      res.setHeader('content-type', rt.metrics.contentType);
      res.end(await rt.metrics.metrics());
    });
    app.use((req, res, next) => (this.api ? this.api(req, res, next) : next(new ServiceUnavailableError('The server is loading its models; try again shortly.'))));
    app.use((req, _res, next) => next(new ApiError(404, 'invalid_request_error', `Unknown request URL: ${req.method} ${req.path}.`, { code: 'unknown_url' })));
    app.use(errorHandler({ log: this.log }));
  }

  /**
   * Serves the API on loaded models (before this, it answers 503). The
   * request validator is warmed first: it compiles its schemas on the first
   * request it sees (~0.8 s), which would otherwise be a user's.
   */
  async attach(loaded: Loaded): Promise<void> {
    const api = Router();
    api.use(express.json({ limit: this.options.maxBodyBytes }));
    api.use(checkRequestShapes);
    const validator = OpenApiValidator.middleware({
      apiSpec: validatorDocument(OPENAPI_DOCUMENT) as never,
      validateRequests: { discriminator: true },
      // Keys are checked before (auth.ts) with OpenAI's 401s; the validator's own check cost ~0.1 ms a request.
      validateSecurity: false,
      validateResponses: false,
      ignoreUndocumented: true,
    });
    await warmValidator(validator);
    this.loaded = loaded;
    api.use(validator);
    api.use(openaiRoutes(() => this.runtime(), () => loaded.builtins));
    api.use(responsesRoutes({ rt: () => this.runtime(), component: () => loaded.builtins.responses, store: this.options.store }));
    const { registry, loader, maxRunLimits: maxLimits, runLimits } = this.options.inferlets;
    const runDeps = { rt: () => this.runtime(), registry, loader, maxLimits, ...(runLimits ? { limits: runLimits } : {}) };
    const runs = (this.runs = new Runs(runDeps));
    api.use(inferletRoutes(this.options.inferlets, (sha256) => runs.forget(sha256)));
    api.use(runRoutes(runs, runDeps));
    // A guest's runtime.launch of another component: one its tenant uploaded, by id or name.
    loaded.host.resolveComponentsWith(async (tenant, ref) => {
      const e = ref.startsWith('inf_') ? registry.get(ref) : registry.byName(tenant, ref);
      if (!e || e.tenant !== tenant) throw new Error(`no inferlet "${ref}" uploaded by this tenant`);
      return runs.componentFor(e);
    });
    api.use(customRoutes(() => this.runtime(), () => loaded.routes));
    this.api = api;
  }

  /** From now on every request but /health and /metrics answers 503 with `reason` (and /ready says not ready); the log has the cause. */
  stopServing(reason: string): void {
    this.broken = reason;
  }

  get ready(): boolean {
    return this.loaded !== null && this.broken === null;
  }

  runtime(): Loaded {
    if (!this.loaded) throw new ServiceUnavailableError('The server is loading its models.');
    return this.loaded;
  }

  /** Listens; resolves with the bound address. */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const server = this.app.listen(port, host, (err?: Error) => {
        if (err) return reject(err);
        resolve(server.address() as AddressInfo);
      });
      server.on('error', reject);
      server.keepAliveTimeout = 65_000;
      this.server = server;
    });
  }

  /**
   * Stops accepting connections, lets running requests finish for up to
   * `graceMs` (new requests on open connections get 503), then ends every
   * connection. The store and the host are the caller's to close after this.
   */
  async close(graceMs = 10_000): Promise<void> {
    const server = this.server;
    this.server = null;
    this.closing = true;
    // Runs outlive their requests: they end now, and their streams end with run.ended.
    this.runs?.cancelAll('the server is shutting down');
    if (server) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      const deadline = performance.now() + graceMs;
      while (this.inFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      server.closeAllConnections();
      await closed;
    }
    this.loaded?.metrics.close();
  }

  /** Counts requests in flight (for a graceful close) and records each in the metrics when it ends. */
  private countRequests(): RequestHandler {
    return (req, res, next) => {
      const t0 = performance.now();
      const m = this.loaded?.metrics;
      const counted = req.path !== '/health' && req.path !== '/ready';
      if (counted) this.inFlight++;
      m?.requestStarted(req.method);
      res.on('close', () => {
        if (counted) this.inFlight--;
        if (!m) return;
        m.requestEnded(req.method);
        // Route templates only (never raw paths with ids), written the Express way (:name), so the label set stays small.
        const template = (req.route?.path as string | undefined) ?? (req as { openapi?: { openApiRoute?: string } }).openapi?.openApiRoute;
        const route = template ? template.replace(/\{([^}]+)\}/g, ':$1') : 'unmatched';
        m.requestDone({ route, method: req.method, status: res.headersSent ? res.statusCode : 499 }, (performance.now() - t0) / 1000);
      });
      next();
    };
  }
}
