/**
 * Runs of uploaded components (scope "inferlets"): an invocation started
 * over HTTP that outlives its request. Its events are numbered and kept in a
 * bounded replay buffer, so a client that dropped its connection attaches
 * again with `Last-Event-ID` and loses nothing while the buffer holds it;
 * its status and result are kept for a while after it ends.
 *
 *   POST /v1/inferlets/{id|name}/runs   {input, limits, cancel_on_disconnect}
 *                                       → 201 the run; with Accept: text/event-stream, its events to the end
 *   GET  /v1/runs                       the tenant's runs (an admin's: every tenant's), without their results
 *   GET  /v1/runs/{id}                  status, tokens, KV pages held, and the result once it has ended
 *   GET  /v1/runs/{id}/events           attach (SSE), from Last-Event-ID (or ?after=N)
 *   POST /v1/runs/{id}/cancel
 *   POST /v1/runs/{id}/messages         {message} → 202: for the inferlet's session.receive;
 *                                       what it sends back is a `session.message` event
 *
 * A client that leaves 8 MiB unread has its connection closed (it may
 * attach again from its last event); a quiet stream gets a keep-alive
 * comment every 15 s.
 * An event goes out as `id: N`, `event: NAME`, `data: …`; a stream that
 * starts a run begins with `event: run.started` (the run, with its id, to
 * attach with), and every stream ends with `event: run.ended` (the run). A client that asks for
 * events the buffer no longer holds gets `event: run.gap` with how many it
 * missed, then what is held.
 */
import { Router, type Request, type Response } from 'express';
import type { Config } from '../config.ts';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import type { ComponentLoader } from '../runtime/host/component-loader.ts';
import { InvocationError, SessionError, type InvocationResult, type OutputEvent } from '../runtime/host/invocation.ts';
import type { RunningInvocation } from '../runtime/host/port.ts';
import type { InstanceLimits } from '../runtime/protocol.ts';
import { mayUseModel, type Principal } from './auth.ts';
import { ApiError, InvalidRequestError, NotFoundError } from './errors.ts';
import type { InferletRegistry, UploadedInferlet } from './inferlet-registry.ts';
import { inferletsPrincipal, visibleInferlet } from './inferlet-routes.ts';
import { newId, unixNow, type Runtime } from './invoke.ts';
import { sseEvent } from './relay.ts';

export interface RunLimits {
  /** Runs one tenant may have running at once. */
  runningPerTenant: number;
  /** Ended runs kept per tenant (newest first), what they may hold together (events and results, in UTF-16 units), and for how long. */
  keptPerTenant: number;
  keptBytesPerTenant: number;
  keptMs: number;
  /** Events a run's replay buffer holds, and their size (UTF-16 units). */
  replayEvents: number;
  replayBytes: number;
}

export const DEFAULT_RUN_LIMITS: RunLimits = { runningPerTenant: 64, keptPerTenant: 100, keptBytesPerTenant: 64 << 20, keptMs: 60 * 60 * 1000, replayEvents: 4096, replayBytes: 8 << 20 };

const CANCELLED = 'cancelled through POST /v1/runs/{id}/cancel';
/** A stream whose client lets this much pile up unread is ended (it may attach again from its last event). */
const MAX_UNREAD_BYTES = 8 << 20;
/** How long a status read waits for the pages runs hold (from the engine thread) before it answers with the last ones. */
const PAGES_WAIT_MS = 500;
/** A comment line this often keeps a quiet stream from being cut by proxies. */
const KEEP_ALIVE_MS = 15_000;

type RunStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';

interface NumberedEvent extends OutputEvent {
  seq: number;
}

class Run {
  readonly id = newId('run_');
  readonly createdAt = unixNow();
  endedAt: number | null = null;
  status: RunStatus = 'running';
  result: InvocationResult | null = null;
  error: { kind: string; message: string } | null = null;
  tokens = 0;
  /** KV pages it and its children held when last asked (GET /v1/runs, GET /v1/runs/{id}); 0 once ended. */
  pages = 0;
  /** Events kept for replay, oldest first; `dropped` fell out of the buffer. */
  readonly events: NumberedEvent[] = [];
  private bytes = 0;
  dropped = 0;
  private readonly watchers = new Set<() => void>();
  inv: RunningInvocation | null = null;
  /** Its end has been taken off its tenant's running count. */
  counted = false;
  /** Why a cancel is on its way, if one is. */
  cancelling: string | null = null;
  /** When it ended (Date.now()), and its place among runs' ends (for keeping the most recently ended). */
  endedMs = 0;
  endOrder = 0;
  private static ends = 0;
  readonly tenant: string;
  readonly inferlet: UploadedInferlet;
  private readonly limits: RunLimits;

  constructor(tenant: string, inferlet: UploadedInferlet, limits: RunLimits) {
    this.tenant = tenant;
    this.inferlet = inferlet;
    this.limits = limits;
  }

  get numEvents(): number {
    return this.dropped + this.events.length;
  }

  push(e: OutputEvent): void {
    this.events.push({ ...e, seq: this.numEvents + 1 });
    this.bytes += e.data.length + e.event.length;
    while (this.events.length > this.limits.replayEvents || (this.bytes > this.limits.replayBytes && this.events.length > 1)) {
      const old = this.events.shift()!;
      this.bytes -= old.data.length + old.event.length;
      this.dropped++;
    }
    this.wake();
  }

  end(status: RunStatus, result: InvocationResult | null, error: { kind: string; message: string } | null): void {
    this.status = status;
    this.result = result;
    this.error = error;
    this.endedAt = unixNow();
    this.endedMs = Date.now();
    this.pages = 0;
    this.endOrder = ++Run.ends;
    this.inv = null; // what it held on the host side is released; only its record stays
    this.wake();
  }

  /** What it keeps once ended, in UTF-16 units: its events and its result. */
  get size(): number {
    return this.bytes + (this.result?.data?.length ?? 0);
  }

  /** Kept events from `seq` on (the buffer is in order, without holes). */
  eventsAfter(seq: number): NumberedEvent[] {
    return this.events.slice(Math.max(0, seq - this.dropped));
  }

  /** Calls `w` after each new event and at the end, until it is removed. */
  watch(w: () => void): () => void {
    this.watchers.add(w);
    return () => void this.watchers.delete(w);
  }

  private wake(): void {
    for (const w of [...this.watchers]) w();
  }

  /** The run's object; `summary` leaves the result out (null), as lists give it. */
  toJSON(summary = false): Record<string, unknown> {
    return {
      id: this.id,
      object: 'run',
      inferlet_id: this.inferlet.id,
      status: this.status,
      created_at: this.createdAt,
      ended_at: this.endedAt,
      tokens: this.tokens,
      pages: this.pages,
      events: this.numEvents,
      owned_by: this.tenant,
      result: this.result && !summary ? { status: this.result.status, headers: this.result.headers, data: this.result.data } : null,
      error: this.error,
    };
  }
}

export interface RunDeps {
  rt: () => Runtime;
  registry: InferletRegistry;
  /** Transpiles into the folder the host runs components from (both use `[inferlets] cache_dir`). */
  loader: ComponentLoader;
  /** Caps on what a run may ask for: the [inferlets] defaults. */
  maxLimits: InstanceLimits;
  limits?: Partial<RunLimits>;
}

/** The runs of this server, by id. */
export class Runs {
  private readonly runs = new Map<string, Run>();
  private readonly limits: RunLimits;
  /** Runs going (or getting ready), per tenant. */
  private readonly runningBy = new Map<string, number>();
  /** Components made ready for the host, by content hash (checked and transpiled on the loader's thread). */
  private readonly ready = new Map<string, Promise<StoredComponent>>();

  private readonly deps: RunDeps;

  constructor(deps: RunDeps) {
    this.deps = deps;
    this.limits = { ...DEFAULT_RUN_LIMITS, ...deps.limits };
  }

  /** Starts a run of `entry` as the principal's tenant. */
  async start(p: Principal, entry: UploadedInferlet, input: unknown, limits: Partial<InstanceLimits>): Promise<Run> {
    this.expireByTime();
    const running = this.runningBy.get(p.tenant) ?? 0;
    if (running >= this.limits.runningPerTenant) {
      throw new ApiError(429, 'rate_limit_error', `This tenant has ${running} runs going, the most it may; wait for one to end or cancel one.`, { code: 'too_many_runs' });
    }
    // Counted from now on, while its component gets ready: runs started together cannot pass the cap together.
    const run = new Run(p.tenant, entry, this.limits);
    this.runs.set(run.id, run);
    this.runningBy.set(p.tenant, running + 1);
    run.watch(() => {
      if (run.status === 'running' || run.counted) return;
      run.counted = true; // once, at its end
      const n = (this.runningBy.get(run.tenant) ?? 1) - 1;
      if (n > 0) this.runningBy.set(run.tenant, n);
      else this.runningBy.delete(run.tenant);
    });
    let inv: RunningInvocation;
    try {
      const component = await this.componentFor(entry);
      const rt = this.deps.rt();
      const models = [...rt.engines.keys()].filter((m) => mayUseModel(p, m));
      inv = rt.host.invoke(component, { input, tenant: p.tenant, models, limits });
    } catch (err) {
      // It never started (its component, or the host refused): it is not kept, and counts no more.
      run.end('failed', null, { kind: 'refused', message: err instanceof Error ? err.message : String(err) });
      this.runs.delete(run.id);
      throw err;
    }
    run.inv = inv;
    inv.observer = { tokens: (count) => void (run.tokens += count), prompt: () => {}, generation: () => {} };
    inv.onEvent((e) => run.push(e));
    inv.result.then(
      (r) => run.end('succeeded', r, null),
      (err: unknown) => {
        const kind = err instanceof InvocationError ? err.kind : 'guest';
        run.end(inv.state === 'cancelled' ? 'cancelled' : 'failed', null, { kind, message: err instanceof Error ? err.message : String(err) });
      },
    );
    void inv.result.finally(() => this.expire()).catch(() => {});
    if (run.cancelling !== null) inv.cancel(run.cancelling);
    return run;
  }

  /** A run the principal may see; 404 otherwise. */
  get(p: Principal, id: string): Run {
    this.expireByTime();
    const run = this.runs.get(id);
    if (!run || (run.tenant !== p.tenant && !p.admin)) throw new NotFoundError(`No run found with id '${id}'.`, 'not_found', 'run_id');
    return run;
  }

  list(p: Principal): Run[] {
    this.expireByTime();
    return [...this.runs.values()].filter((r) => p.admin || r.tenant === p.tenant);
  }

  /** Reads the pages the running ones of `runs` hold now (from the engine thread, where it runs). */
  async withPages<T extends Run | Run[]>(runs: T): Promise<T> {
    const list = Array.isArray(runs) ? runs : [runs];
    // An engine thread busy past half a second leaves the last figures: a status read never waits on a long step.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, PAGES_WAIT_MS)));
    const asked = Promise.all(list.map(async (r) => r.inv && (r.pages = await r.inv.kvPages().catch(() => r.pages))));
    await Promise.race([asked, late]);
    clearTimeout(timer);
    return runs;
  }

  /** Cancels every run (the server is closing); one still getting its component ready is cancelled as it starts. */
  cancelAll(reason: string): void {
    for (const r of this.runs.values()) {
      if (r.status !== 'running') continue;
      r.cancelling = reason;
      r.inv?.cancel(reason);
    }
  }

  /** Cancels a running run; the run once it has ended. A second cancel while one is on its way is refused, as after the end. */
  async cancel(run: Run): Promise<Run> {
    if (run.status !== 'running' || run.cancelling !== null) throw new InvalidRequestError(`Run '${run.id}' is not running (its status is ${run.cancelling !== null ? 'cancelling' : run.status}).`, 'run_id');
    run.cancelling = CANCELLED;
    run.inv?.cancel(CANCELLED); // one still getting its component ready is cancelled as it starts (start)
    if (run.status === 'running') {
      await new Promise<void>((resolve) => {
        const unwatch = run.watch(() => {
          if (run.status === 'running') return;
          unwatch();
          resolve();
        });
      });
    }
    return run;
  }

  /** Delivers a client's message to a running run: the messages then waiting unread. */
  async message(run: Run, message: string): Promise<number> {
    const notRunning = () => new InvalidRequestError(`Run '${run.id}' is not running (its status is ${run.cancelling !== null && run.status === 'running' ? 'cancelling' : run.status}).`, 'run_id');
    if (!run.inv || run.status !== 'running' || run.cancelling !== null) throw notRunning();
    try {
      return await run.inv.deliver(message);
    } catch (err) {
      if (!(err instanceof SessionError)) throw err;
      if (err.code === 'ended') throw notRunning();
      if (err.code === 'too_large') throw new InvalidRequestError(`The message is too long: ${err.message}.`, 'message', 'string_above_max_length');
      throw new ApiError(429, 'rate_limit_error', `Run '${run.id}' ${err.message}; send it again once the run has read some.`, { code: 'session_queue_full' });
    }
  }

  /** No upload uses these bytes any more: the host drops what it keeps for them (runs of them go on). */
  forget(sha256: string): void {
    const ready = this.ready.get(sha256);
    this.ready.delete(sha256);
    void ready?.then((component) => this.deps.rt().host.forget(component)).catch(() => {});
  }

  /** An upload made ready for the host (runs, and children guests launch by its id or name). */
  componentFor(entry: UploadedInferlet): Promise<StoredComponent> {
    let ready = this.ready.get(entry.sha256);
    if (!ready) {
      // Checked and transpiled (or found in the cache) on the loader's thread, into the folder the host runs components from:
      // what it answers is all an invocation needs, and neither the main nor the engine thread reads or hashes the bytes.
      ready = this.deps.loader.load(this.deps.registry.bytes(entry));
      this.ready.set(entry.sha256, ready);
      ready.catch(() => this.ready.delete(entry.sha256));
    }
    return ready;
  }

  /**
   * Ended runs are dropped by number and size as each ends (expire); past
   * their time, when the runs are next looked at, at most once a second (a
   * launch need not sort every ended run).
   */
  private expireByTime(): void {
    const now = Date.now();
    if (now - this.expiredAt < 1000) return;
    this.expiredAt = now;
    this.expire();
  }
  private expiredAt = 0;

  /** Forgets ended runs past their time, and beyond the number and size kept per tenant: those that ended longest ago first. */
  private expire(): void {
    const now = Date.now();
    const ended = [...this.runs.values()].filter((r) => r.status !== 'running').sort((a, b) => b.endOrder - a.endOrder);
    const kept = new Map<string, { n: number; size: number }>();
    for (const r of ended) {
      const k = kept.get(r.tenant) ?? { n: 0, size: 0 };
      k.n++;
      k.size += r.size;
      kept.set(r.tenant, k);
      if (k.n > this.limits.keptPerTenant || k.size > this.limits.keptBytesPerTenant || now - r.endedMs > this.limits.keptMs) this.runs.delete(r.id);
    }
  }

}

/** The limits a run asks for, each at most the server's. */
function runLimits(body: Record<string, unknown>, max: InstanceLimits): Partial<InstanceLimits> {
  const l = body.limits;
  if (l === undefined || l === null) return {};
  if (typeof l !== 'object' || Array.isArray(l)) throw new InvalidRequestError('limits must be an object: {tokens, kv_pages, wall_time_s, memory_mb}', 'limits');
  const out: Partial<InstanceLimits> = {};
  const fields: Array<[string, keyof InstanceLimits, number]> = [
    ['tokens', 'tokens', 1],
    ['kv_pages', 'kvPages', 1],
    ['wall_time_s', 'wallTimeMs', 1000],
    ['memory_mb', 'memoryBytes', 1024 * 1024],
  ];
  const given = l as Record<string, unknown>;
  for (const k of Object.keys(given)) if (!fields.some(([f]) => f === k)) throw new InvalidRequestError(`limits.${k} is not a limit; they are tokens, kv_pages, wall_time_s and memory_mb`, `limits.${k}`);
  for (const [field, key, unit] of fields) {
    const v = given[field];
    if (v === undefined) continue;
    const whole = field === 'tokens' || field === 'kv_pages';
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (whole && !Number.isInteger(v))) {
      throw new InvalidRequestError(`limits.${field} must be a positive ${whole ? 'integer' : 'number'}`, `limits.${field}`);
    }
    out[key] = Math.min(v * unit, max[key]);
  }
  return out;
}

const wantsStream = (req: Request) => (req.get('accept') ?? '').includes('text/event-stream');

/**
 * Streams a run's events from after `after` as SSE until it ends, then its
 * end (first `run.started` with the run, for a stream that starts it).
 * Returns when the stream is over or the client went away.
 */
function streamRun(res: Response, run: Run, after: number, started = false): Promise<void> {
  if (res.destroyed || !res.socket || res.socket.destroyed) return Promise.resolve(); // the client left while its run got ready
  res.status(200);
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-cache');
  res.setHeader('x-accel-buffering', 'no');
  // The headers leave with the first write (not flushed alone): one packet fewer for the client to wake up for.
  let head = started ? sseEvent('run.started', JSON.stringify(run)) : '';
  let sent = after;
  let pending = false;
  return new Promise<void>((resolve) => {
    const pump = () => {
      pending = false;
      if (res.writableEnded) return;
      const first = run.dropped + 1;
      let out = head;
      head = '';
      if (sent + 1 < first) {
        out += sseEvent('run.gap', JSON.stringify({ missed: first - sent - 1 }));
        sent = first - 1;
      }
      for (const e of run.eventsAfter(sent)) {
        out += `id: ${e.seq}\n${sseEvent(e.event, e.data)}`;
        sent = e.seq;
      }
      if (run.status !== 'running') {
        res.end(out + sseEvent('run.ended', JSON.stringify(run)));
        return stop();
      }
      // A client that does not read is let go rather than queued for: it attaches again from its last event.
      // (Its connection is closed: what is queued would never drain, and the socket would stay.) What is queued
      // counts, not this batch: an attach's first batch, the replay buffer, may be 8 MiB itself.
      if (res.writableLength > MAX_UNREAD_BYTES) {
        res.destroy();
        return stop();
      }
      if (out) res.write(out);
      else if (!res.headersSent) res.flushHeaders(); // an attach with nothing to send yet still answers at once
    };
    const unwatch = run.watch(() => {
      if (!pending) (pending = true), setImmediate(pump);
    });
    const keepAlive = setInterval(() => void (res.writableEnded || res.write(': keep-alive\n\n')), KEEP_ALIVE_MS).unref();
    const stop = () => {
      unwatch();
      clearInterval(keepAlive);
      res.off('close', stop);
      resolve();
    };
    res.on('close', stop);
    pump();
  });
}

export function runRoutes(runs: Runs, deps: RunDeps): Router {
  const router = Router();

  router.post('/v1/inferlets/:inferlet_id/runs', async (req, res) => {
    const p = inferletsPrincipal(res);
    const entry = visibleInferlet(deps.registry, p, String(req.params.inferlet_id));
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (typeof body !== 'object' || Array.isArray(body)) throw new InvalidRequestError('The body must be a JSON object: {input, limits, cancel_on_disconnect}');
    for (const k of Object.keys(body)) if (!['input', 'limits', 'cancel_on_disconnect'].includes(k)) throw new InvalidRequestError(`Unrecognized request argument supplied: ${k}`, k, 'unknown_parameter');
    const stream = wantsStream(req);
    // Watched from before the start: a client gone while its run gets ready still cancels it.
    let gone = false;
    if (stream && body.cancel_on_disconnect === true) res.on('close', () => void (gone = !res.writableFinished));
    const run = await runs.start(p, entry, body.input ?? null, runLimits(body, deps.maxLimits));
    if (!stream) return void res.status(201).json(run);
    if (body.cancel_on_disconnect === true) {
      const cancel = () => void (res.writableFinished || run.inv?.cancel('the client disconnected'));
      if (gone) return cancel();
      res.on('close', cancel);
    }
    await streamRun(res, run, 0, true);
  });

  router.get('/v1/runs', async (_req, res) => {
    res.json({ object: 'list', data: (await runs.withPages(runs.list(inferletsPrincipal(res)))).map((r) => r.toJSON(true)) });
  });

  router.get('/v1/runs/:run_id', async (req, res) => {
    res.json(await runs.withPages(runs.get(inferletsPrincipal(res), String(req.params.run_id))));
  });

  router.get('/v1/runs/:run_id/events', async (req, res) => {
    const run = runs.get(inferletsPrincipal(res), String(req.params.run_id));
    const from = req.get('last-event-id') ?? (typeof req.query.after === 'string' ? req.query.after : '0');
    const after = /^\d{1,15}$/.test(from) ? Number(from) : NaN;
    if (!Number.isInteger(after) || after < 0 || after > run.numEvents) {
      throw new InvalidRequestError(`Last-Event-ID (or after) must be the number of an event of this run, 0 to ${run.numEvents}, got ${JSON.stringify(from)}`, 'after');
    }
    await streamRun(res, run, after);
  });

  router.post('/v1/runs/:run_id/cancel', async (req, res) => {
    res.json(await runs.cancel(runs.get(inferletsPrincipal(res), String(req.params.run_id))));
  });

  router.post('/v1/runs/:run_id/messages', async (req, res) => {
    const run = runs.get(inferletsPrincipal(res), String(req.params.run_id));
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (typeof body !== 'object' || Array.isArray(body) || typeof body.message !== 'string') throw new InvalidRequestError('The body must be a JSON object: {"message": "..."} (a string)', 'message');
    for (const k of Object.keys(body)) if (k !== 'message') throw new InvalidRequestError(`Unrecognized request argument supplied: ${k}`, k, 'unknown_parameter');
    const queued = await runs.message(run, body.message);
    res.status(202).json({ object: 'run.message', run_id: run.id, queued });
  });

  return router;
}

/** The [inferlets] limits as caps on what a run may ask. */
export function maxRunLimits(config: Config): InstanceLimits {
  const i = config.inferlets;
  return { memoryBytes: i.memoryMb * 1024 * 1024, kvPages: i.kvPages > 0 ? i.kvPages : Number.MAX_SAFE_INTEGER, tokens: i.maxTokens, wallTimeMs: i.wallTimeS * 1000 };
}
