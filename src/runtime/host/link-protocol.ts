/**
 * Messages between the main thread (the gateway, src/gateway/engine-link.ts)
 * and the engine thread (engine-thread.ts).
 *
 *   main → engine: start, load a component, invoke, cancel, deliver a session message, keep or drop a
 *                  snapshot, refresh stats, count what is held, run the
 *                  engine alone (bench), close
 *   engine → main: ready (or failed), batches of output records (events,
 *                  token times, ends, steps) one message per turn of its
 *                  event loop, replies to requests, log lines, and requests
 *                  to resolve a component a guest launches (answered with
 *                  `resolved`)
 *
 * Times cross as epoch milliseconds (performance.timeOrigin + now), so they
 * do not depend on the threads' performance clocks sharing an origin (Node
 * 24's do; nothing promises it).
 */
import type { Config } from '../../config.ts';
import type { EngineStats, StepStats, TenantShare } from '../../engine/index.ts';
import type { StoredComponent } from './component-store.ts';
import type { HostStats } from './host.ts';
import type { GenerationTiming, InvocationError, InvocationResult } from './invocation.ts';
import type { InstanceLimits } from '../protocol.ts';

export interface EngineThreadInit {
  config: Config;
  models?: string[];
  shares: Array<[string, Partial<TenantShare>]>;
  tenants: number;
}

/** What the main thread knows of a served model. */
export interface ModelFacts {
  name: string;
  dir: string;
  config: { maxPositionEmbeddings: number };
}

export interface Snapshot {
  host: HostStats;
  models: EngineStats[];
}

/** Pages and contexts held, per model (tests check nothing is left behind). */
export interface Held {
  pagesInUse: number;
  contexts: number;
  snapshots: number;
  /** Invocations the engine thread's host still runs (all models). */
  invocations: number;
}

/** N greedy generations straight on a model's engine, no HTTP and no inferlet: bench:serve's baseline, on the same engine as the gateway's. */
export interface EngineAloneRequest {
  model: string;
  tokens: number[];
  n: number;
  maxTokens: number;
}

export interface EngineAloneResult {
  /** From the first append to the last generation's end. */
  wallMs: number;
  /** Start → each generation's first text; between successive text chunks of one generation. */
  ttftMs: number[];
  itlMs: number[];
  completionTokens: number[];
}

export interface InvokeWire {
  /** JSON text, every string well-formed: serialized once, on the main thread. */
  inputJson: string;
  tenant?: string;
  models?: string[];
  limits?: Partial<InstanceLimits>;
  reuseInstance?: boolean;
}

export type ToEngine =
  | { t: 'invoke'; id: number; component: StoredComponent; options: InvokeWire }
  | { t: 'cancel'; id: number; reason: string }
  | { t: 'deliver'; q: number; id: number; message: string }
  | { t: 'pages'; q: number; id: number }
  | { t: 'forget'; component: StoredComponent }
  | { t: 'keep' | 'drop'; model: string; tenant: string; name: string }
  | { t: 'load'; q: number; source: Uint8Array | string }
  | { t: 'refresh'; q: number }
  | { t: 'held'; q: number }
  | { t: 'engine-alone'; q: number; request: EngineAloneRequest }
  | { t: 'close'; q: number }
  | { t: 'resolved'; r: number; ok: true; component: StoredComponent }
  | { t: 'resolved'; r: number; ok: false; error: ErrorWire };

/** An error as it crosses: its class by name (engine-link.ts rebuilds the ones callers tell apart), an InvocationError's kind, an EngineError's code. */
export interface ErrorWire {
  name: string;
  message: string;
  kind?: InvocationError['kind'];
  code?: string;
  stack?: string;
}

/** One output record of a batch. */
export type OutRecord =
  /** An event; status and headers ride with the first event after they changed (a stream starts with those of its first event). */
  | ['e', number, string, string, number?, Record<string, string>?]
  | ['t', number, number, number | null, number]
  | ['p', number, number]
  | ['g', number, GenerationTiming]
  | ['end', number, InvocationResult | null, ErrorWire | null, EndCounts]
  | ['step', number, StepStats];

export interface EndCounts {
  numTokens: number;
  numPromptTokens: number;
  maxGenerationTokens: number;
  instantiateMs: number;
}

export type FromEngine =
  | { t: 'ready'; models: ModelFacts[]; stats: Snapshot }
  | { t: 'failed'; error: ErrorWire }
  | { t: 'out'; records: OutRecord[] }
  | { t: 'reply'; q: number; ok: true; value: unknown }
  | { t: 'reply'; q: number; ok: false; error: ErrorWire }
  | { t: 'log'; line: string }
  /** runtime.launch names a component: the main thread (which has the uploads) finds it. */
  | { t: 'resolve'; r: number; tenant: string; ref: string };
