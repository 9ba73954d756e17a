/**
 * Runs one inferlet for one HTTP request: starts the invocation as the
 * caller's tenant, relays it, and records it in the metrics: its tokens as
 * the engine produces them (the invocation's observer), its latency and
 * finish reasons when it ends.
 */
import { randomFillSync } from 'node:crypto';
import type { Response } from 'express';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import { InvocationError } from '../runtime/host/invocation.ts';
import type { HostPort, RunningInvocation, ServedModel, Snapshots } from '../runtime/host/port.ts';
import type { InstanceLimits } from '../runtime/protocol.ts';
import type { FinishReason, FinishReasonReader } from './finish-reasons.ts';
import type { GatewayMetrics, RequestMetrics, RequestParams } from './metrics.ts';
import { relay, type RelayOptions, type RelayOutcome } from './relay.ts';

export interface Runtime {
  host: HostPort;
  /** Served models by name, in the order they were given. */
  engines: Map<string, ServedModel>;
  /** KV snapshots kept for Responses follow-ups. */
  snapshots: Snapshots;
  metrics: GatewayMetrics;
  log: (line: string) => void;
}

export interface InvokeRequest {
  component: StoredComponent;
  input: unknown;
  tenant: string;
  model: string;
  limits?: Partial<InstanceLimits>;
  /** Reuse instances across invocations: the built-ins, and routes that say they keep no module state. */
  builtin?: boolean;
  /** Called as soon as the invocation exists (e.g. to make it cancellable by id). */
  started?: (inv: RunningInvocation) => void;
  /** Reads the finish reasons of the API's answer (the built-in routes); without one, they are its generations'. */
  finishReasons?: FinishReasonReader;
  /** The request's max_tokens and n, for the metrics. */
  params?: RequestParams;
  /** Run it once more if its invocation is lost with its worker before anything was sent (built-ins: nothing else changes). */
  retryLost?: boolean;
}

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** Random bytes drawn 4 KiB at a time (a call to the system's generator per id cost ~0.1 ms). */
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

/** An id like OpenAI's: a prefix and 24 random base-62 characters. */
export function newId(prefix: string): string {
  if (poolAt + 24 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  let s = prefix;
  for (let i = 0; i < 24; i++) s += ALPHABET[pool[poolAt++]! % 62];
  return s;
}

export const unixNow = (): number => Math.floor(Date.now() / 1000);

/**
 * Runs the request's invocation and relays it. A built-in's invocation lost
 * with its worker (a neighbour that would not stop got the worker replaced, or
 * the worker crashed) before anything was sent is run once more: nothing of
 * it reached the client, and a built-in changes nothing outside its answer.
 */
export async function invokeAndRelay(rt: Runtime, res: Response, req: InvokeRequest, options: RelayOptions = {}): Promise<RelayOutcome> {
  // One request in the metrics however many times it runs: a lost run's timings are dropped, and it is ended once.
  const recorder = rt.metrics.startRequest(req.model);
  if (req.retryLost) recorder.hold();
  try {
    return await invokeOnce(rt, res, req, options, recorder, req.retryLost ?? false);
  } catch (err) {
    if (!req.retryLost || res.headersSent || !(err instanceof LostInvocation)) throw err instanceof LostInvocation ? err.error : err;
    rt.log(`pie: ${req.model}: an invocation was lost with its worker before it answered; running it again`);
    recorder.restart();
    return await invokeOnce(rt, res, req, options, recorder, false).catch((e) => {
      throw e instanceof LostInvocation ? e.error : e;
    });
  }
}

/** A relay that failed because its invocation was lost with its worker (the ApiError it would have answered with inside). */
class LostInvocation extends Error {
  readonly error: unknown;
  constructor(error: unknown) {
    super('lost');
    this.error = error;
  }
}

/** One run of the request's invocation; the request's metrics end with it unless it is lost and `retrying`. */
async function invokeOnce(rt: Runtime, res: Response, req: InvokeRequest, options: RelayOptions, recorder: RequestMetrics, retrying: boolean): Promise<RelayOutcome> {
  const inv = rt.host.invoke(req.component, {
    input: req.input,
    tenant: req.tenant,
    models: [req.model],
    reuseInstance: req.builtin ?? false,
    ...(req.limits ? { limits: req.limits } : {}),
  });
  // Set before the invocation's first engine step can run (steps start on a later turn of the event loop).
  inv.observer = recorder;
  req.started?.(inv);
  const reader = req.finishReasons;
  const relayOptions: RelayOptions = {
    ...options,
    onEvent: (e) => {
      reader?.event(e);
      options.onEvent?.(e);
      if (res.headersSent) recorder.release(); // it cannot run again now: its timings are the request's
    },
  };
  let outcome: RelayOutcome | null = null;
  let lost = false;
  try {
    outcome = await relay(res, inv, relayOptions);
    return outcome;
  } catch (err) {
    const reason = await inv.result.then(() => null, (e: unknown) => e);
    lost = reason instanceof InvocationError && reason.kind === 'guest' && reason.message.startsWith('the invocation was lost');
    if (lost) throw new LostInvocation(err);
    throw err;
  } finally {
    if (!(lost && retrying && !res.headersSent)) {
      const reasons = finishReasons(inv, outcome, reader, recorder);
      recorder.end({ reasons, promptTokens: inv.numPromptTokens, generationTokens: inv.numTokens, maxGenerationTokens: inv.maxGenerationTokens, params: req.params ?? {} });
    }
  }
}

/**
 * The request's finish reasons, one per choice: the API answer's own; for an
 * answer without any (a custom route's, one request however many
 * generations it ran), `length` if one of them ran out of tokens, else
 * `stop`; `abort` when it was cancelled (the client went away, or a cancel
 * call); `error` when it failed or was refused.
 */
function finishReasons(inv: RunningInvocation, outcome: RelayOutcome | null, reader: FinishReasonReader | undefined, recorder: RequestMetrics): FinishReason[] {
  if (inv.state === 'cancelled') return ['abort'];
  if (inv.state !== 'succeeded' || !outcome?.result || outcome.status >= 400) return ['error'];
  const read = reader?.reasons(outcome.result) ?? [];
  if (read.length > 0) return read;
  return [recorder.cutOff ? 'length' : 'stop'];
}
