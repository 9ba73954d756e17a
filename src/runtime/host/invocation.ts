/**
 * One run of an inferlet, as the host sees it: the caller's handle (events,
 * result, cancel) and the host-side state of its guest (contexts,
 * generations, subscriptions, limit counters). Everything it holds is
 * released when it ends, whatever the path.
 *
 *   running ──run returned──────────► succeeded   (result = set-result data)
 *      │  ├──guest error / trap─────► failed      (error names the cause)
 *      │  ├──limit / watchdog───────► failed
 *      │  └──cancel() / signal──────► cancelled
 */
import type { Context, Engine, FinishReason, Generation, GenerationChunk, Matcher } from '../../engine/index.ts';
import type { HeldMatcher } from './handlers/grammar.ts';
import type { PageReservation } from './limits.ts';
import type { Mailbox } from './message-hub.ts';
import type { InstanceLimits } from '../protocol.ts';

export interface OutputEvent {
  event: string;
  data: string;
}

export interface InvocationResult {
  /** What the guest passed to `set-result` (null if it never did). */
  data: string | null;
  status: number;
  headers: Record<string, string>;
}

export type InvocationState = 'running' | 'succeeded' | 'failed' | 'cancelled';

export class InvocationError extends Error {
  override name = 'InvocationError';
  /** guest: the inferlet failed or trapped; limit: it exceeded a limit; cancelled; refused: it could not start. */
  readonly kind: 'guest' | 'limit' | 'cancelled' | 'refused';
  constructor(kind: InvocationError['kind'], message: string) {
    super(message);
    this.kind = kind;
  }
}

export interface HeldContext {
  engine: Engine;
  ctx: Context;
  /** The handle of the context it was forked from, through every fork (its own for a new or opened one): forks share their prompt. */
  family: number;
}

export interface HeldGeneration {
  gen: Generation;
  /** Chunks not yet pulled by the guest. */
  chunks: GenerationChunk[];
  /** A pending `next` call waiting for chunks. */
  waiter: ((chunks: GenerationChunk[] | null) => void) | null;
  /** When its first token arrived, and its latest (inter-token latency); 0: none yet. */
  firstTokenAt: number;
  lastChunkAt: number;
  /** Events it streamed to the caller. */
  streamed: number;
  /** The guest's matcher constraining it, if any. */
  matcher: Matcher | null;
  /** Sends what its stream held back, once it has ended (tool-call streams). */
  end: (() => void) | null;
}

/** A host-run generation's life, as metrics read it (performance.now() times; 0: it never got there). */
export interface GenerationTiming {
  queuedAt: number;
  /** The first step that ran it. */
  scheduledAt: number;
  firstTokenAt: number;
  lastTokenAt: number;
  completionTokens: number;
  finishReason: FinishReason;
}

/**
 * Sees an invocation's work as it happens (metrics): tokens inside the engine
 * step that produced them, the prompt when it is known, each generation when
 * it ends. Whoever starts the invocation sets it.
 */
export interface InvocationObserver {
  /** `count` tokens were produced at `now`; `gapMs` since the same generation's previous ones (null for its first). */
  tokens(count: number, gapMs: number | null, now: number): void;
  /** The request's prompt grew by `added` tokens (a generation started from a longer prompt than any before). */
  prompt(added: number): void;
  generation(g: GenerationTiming): void;
}

export class Invocation {
  readonly id: number;
  readonly instanceId: string;
  readonly tenant: string;
  readonly limits: InstanceLimits;
  readonly startedAt = performance.now();
  /** The caller's result; rejects with an InvocationError. */
  readonly result: Promise<InvocationResult>;
  state: InvocationState = 'running';
  status = 200;
  headers: Record<string, string> = {};
  data: string | null = null;

  // host-side state of the guest
  readonly contexts = new Map<number, HeldContext>();
  readonly generations = new Map<number, HeldGeneration>();
  readonly subscriptions = new Map<number, { topic: string; box: Mailbox }>();
  readonly matchers = new Map<number, HeldMatcher>();
  /** Aborted when the invocation ends: ends its waits on other inferlets. */
  readonly signal: AbortSignal;
  private readonly abort = new AbortController();
  /** Models this invocation may load. */
  allowedModels: ReadonlySet<string> = new Set();
  numTokens = 0;
  /** Prompt tokens of the request: the longest prompt any of its generations has read. */
  numPromptTokens = 0;
  private readonly promptByFamily = new Map<number, number>();
  /** The most tokens one of its host-run generations produced (metrics). */
  maxGenerationTokens = 0;
  observer: InvocationObserver | null = null;
  reservedTokens = 0;
  /** Pages set aside for running forwards and generations (see limits.ts). */
  readonly reservations = new Set<PageReservation>();
  peakMemoryBytes = 0;
  /** Time its worker took to get an instance ready, queued instantiations included (0 when a warm one was waiting). */
  instantiateMs = 0;

  private readonly queue: OutputEvent[] = [];
  private wake: (() => void) | null = null;
  private readonly listeners: Array<(e: OutputEvent) => void> = [];
  private resolve!: (r: InvocationResult) => void;
  private reject!: (e: Error) => void;
  private readonly onCancel: (inv: Invocation, reason: string) => void;

  constructor(id: number, tenant: string, limits: InstanceLimits, onCancel: (inv: Invocation, reason: string) => void) {
    this.id = id;
    this.instanceId = `inv-${id.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    this.tenant = tenant;
    this.limits = limits;
    this.onCancel = onCancel;
    this.signal = this.abort.signal;
    this.result = new Promise((res, rej) => ((this.resolve = res), (this.reject = rej)));
    this.result.catch(() => {}); // a caller that only reads events must not see an unhandled rejection
  }

  get done(): boolean {
    return this.state !== 'running';
  }

  /** Stops the invocation: its guest is told, its engine work cancelled, its pages freed. */
  cancel(reason = 'cancelled by the caller'): void {
    if (this.done) return;
    this.onCancel(this, reason);
  }

  /** Output events as the guest emits them; consumed once. Ends when the invocation ends. */
  async *events(): AsyncIterable<OutputEvent> {
    for (;;) {
      while (this.queue.length > 0) yield this.queue.shift()!;
      if (this.done) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }

  /** Receives events as they are emitted instead of iterating (then `events()` sees none). */
  onEvent(listener: (e: OutputEvent) => void): void {
    this.listeners.push(listener);
  }

  /** Tokens were produced (a generation's chunk, or a forward pass's samples): `gapMs` since the same generation's previous chunk (null for its first). */
  noteTokens(count: number, gapMs: number | null, now: number): void {
    if (count > 0) this.observer?.tokens(count, gapMs, now);
  }

  /**
   * A generation started from `numTokens` prompt tokens on a context of
   * `family`. Forks share their prompt: a family counts its longest; several
   * families (a request's several prompts) add up.
   */
  notePrompt(family: number, numTokens: number): void {
    const had = this.promptByFamily.get(family) ?? 0;
    if (numTokens <= had) return;
    this.promptByFamily.set(family, numTokens);
    this.observer?.prompt(numTokens - had);
    this.numPromptTokens += numTokens - had;
  }

  /** A host-run generation ended. */
  noteGeneration(g: GenerationTiming): void {
    this.maxGenerationTokens = Math.max(this.maxGenerationTokens, g.completionTokens);
    this.observer?.generation(g);
  }

  emit(event: string, data: string): void {
    if (this.done) return;
    const e = { event, data };
    if (this.listeners.length > 0) for (const l of this.listeners) l(e);
    else this.queue.push(e);
    this.wake?.();
  }

  /** Called by the host once everything the invocation held has been released. */
  settle(error: InvocationError | null): void {
    if (this.done) return;
    this.abort.abort();
    if (!error) {
      this.state = 'succeeded';
      this.resolve({ data: this.data, status: this.status, headers: this.headers });
    } else {
      this.state = error.kind === 'cancelled' ? 'cancelled' : 'failed';
      this.reject(error);
    }
    this.wake?.();
  }
}
