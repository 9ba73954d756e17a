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
import { AbiError } from '../abi.ts';
import { eventNameProblem, headerProblem, sizeProblem, statusProblem } from '../output-rules.ts';
import { worstCasePages } from './limits.ts';
import { OutputQueue } from './port.ts';
import { Mailbox, MessageLimitError } from './message-hub.ts';
import type { InstanceLimits } from '../protocol.ts';
import type { StoredComponent } from './component-store.ts';

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

/** The event a guest's `session.send` becomes. */
export const SESSION_EVENT = 'session.message';

/** Bounds on what a client's messages may queue for one invocation (session.receive). */
export const SESSION_LIMITS = { maxMessageChars: 1 << 20, maxCharsPerTenant: 4 << 20, maxQueuesPerTenant: 1, maxQueued: 256, ttlMs: Infinity };

/** A message could not be delivered: the invocation has ended, its queue is full, or the message is too long. */
export class SessionError extends Error {
  override name = 'SessionError';
  readonly code: 'ended' | 'queue_full' | 'too_large';
  constructor(code: SessionError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

export class InvocationError extends Error {
  override name = 'InvocationError';
  /** guest: the inferlet failed or trapped; limit: it exceeded a limit; cancelled; refused: it could not start. */
  readonly kind: 'guest' | 'limit' | 'cancelled' | 'refused';
  constructor(kind: InvocationError['kind'], message: string) {
    super(message);
    this.kind = kind;
  }
}

/** A running invocation family (a parent and its children, not detached ones) holds at most this many. */
export const MAX_FAMILY = 64;
/** Events of a child kept unread for its parent; past it the oldest go (a `child.gap` event says how many). */
export const MAX_CHILD_EVENTS = 1024;
/** And at most this many characters of them, for all of a parent's children together. */
export const MAX_CHILD_EVENT_CHARS = 16 << 20;

/** A child as its parent's guest holds it (runtime.launch). */
export interface HeldChild {
  inv: Invocation;
  /** The invocation holding it. */
  parent: Invocation;
  /** Its events not yet read by the parent, and how many were dropped since the last read. */
  events: OutputEvent[];
  /** Characters the unread events hold. */
  chars: number;
  missed: number;
  /** A pending `next-event` call waiting for an event or the end. */
  waiter: (() => void) | null;
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
  /** What it answers with (for routes): set through setStatus, setHeader, setResult. */
  status = 200;
  readonly headers: Record<string, string> = {};
  /** Bumped whenever status or headers change (the engine thread sends them along with the next event). */
  answerVersion = 0;
  data: string | null = null;

  // host-side state of the guest
  readonly contexts = new Map<number, HeldContext>();
  readonly generations = new Map<number, HeldGeneration>();
  /** Generations that could not start, by handle: the error their first next/finish reports (generate expects no answer). */
  readonly unstarted = new Map<number, Error>();
  readonly subscriptions = new Map<number, { topic: string; box: Mailbox }>();
  readonly matchers = new Map<number, HeldMatcher>();
  /** Children its guest launched, by handle (detached ones too, while the guest holds them). */
  readonly childHandles = new Map<number, HeldChild>();
  /** Its family: the invocation it was launched by (null for a root or a detached child), and its running children still in the family. */
  parent: Invocation | null = null;
  readonly kids = new Set<Invocation>();
  /** Launched by another invocation and let run on past its parent's end. */
  detached = false;
  /** Tokens its ended children (and theirs) generated: still the family's. */
  childTokens = 0;
  /** Characters of its children's events it has not read (bounded by MAX_CHILD_EVENT_CHARS). */
  unreadChildChars = 0;
  /** Started by runtime.launch (counted among its tenant's children). */
  launched = false;
  /** What it runs (a `self` launch runs it again). */
  component: StoredComponent | null = null;
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
  /** Tokens set aside for running forwards and generations. */
  private reservedTokens = 0;
  /** What running forwards and generations have set aside (see reserve). */
  private readonly reservations = new Set<Reservation>();
  peakMemoryBytes = 0;
  private inboxBox: Mailbox | null = null;
  /** Time its worker took to get an instance ready, queued instantiations included (0 when a warm one was waiting). */
  instantiateMs = 0;

  private readonly output = new OutputQueue(() => this.done);
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

  /**
   * Sets aside what a forward pass or generation on `ctx` may take: `tokens`
   * it may produce (with `upTo`, as many of them as are left; the reservation
   * says how many), and its worst case in pages for `newTokens` tokens
   * appended (default: `tokens`) and the last `recompute` computed ones
   * computed again. Pages count as the distinct pages the invocation's
   * contexts hold (forks share theirs) plus what running work has set aside
   * and not allocated yet. Throws limit-exceeded, having set nothing aside,
   * when a limit would be passed.
   */
  reserve(ctx: Context, pageSize: number, want: { tokens?: number; upTo?: boolean; newTokens?: number; recompute?: number }): Reservation {
    const family = this.familyUse();
    const ownLeft = this.limits.tokens - this.numTokens - this.reservedTokens;
    const left = family ? Math.min(ownLeft, family.root.limits.tokens - family.tokens) : ownLeft;
    const wanted = want.tokens ?? 0;
    const tokens = want.upTo ? Math.min(wanted, left) : wanted;
    // Work that produces no tokens (scoring a prompt) is not held to the token limit.
    if (want.tokens !== undefined && (want.upTo ? left <= 0 : tokens > left)) {
      throw new AbiError('limit-exceeded', left < ownLeft ? `the invocation and its family have generated their limit of ${family!.root.limits.tokens} tokens` : `the invocation has generated its limit of ${this.limits.tokens} tokens`);
    }
    const pages = worstCasePages(ctx, want.newTokens ?? tokens, pageSize, want.recompute ?? 0);
    const held = this.pagesHeld();
    const reserved = this.pagesReserved();
    if (held + reserved + pages > this.limits.kvPages) {
      throw new AbiError('limit-exceeded', `this needs up to ${pages} more KV pages; the invocation holds ${held} and has ${reserved} reserved, its limit is ${this.limits.kvPages}`);
    }
    if (family && family.pages + pages > family.root.limits.kvPages) {
      throw new AbiError('limit-exceeded', `this needs up to ${pages} more KV pages; the invocation and its family hold or have reserved ${family.pages}, their limit is ${family.root.limits.kvPages}`);
    }
    const r = new Reservation(ctx, pages, tokens, (done) => {
      this.reservations.delete(done);
      this.reservedTokens -= done.tokens;
    });
    this.reservations.add(r);
    this.reservedTokens += tokens;
    return r;
  }

  /** Tokens set aside for its running forwards and generations. */
  reservedTokensNow(): number {
    return this.reservedTokens;
  }

  /** Tokens it may still produce: its own limit's rest, and its family's. */
  tokensLeft(): number {
    const own = this.limits.tokens - this.numTokens - this.reservedTokens;
    const family = this.familyUse();
    return family ? Math.min(own, family.root.limits.tokens - family.tokens) : own;
  }

  /**
   * Most tokens a generation on `ctx` may produce within the page limit (the
   * limit caps a generation like max_tokens does); throws when even the
   * prompt does not fit.
   */
  tokensWithinPages(ctx: Context, pageSize: number): number {
    const family = this.familyUse();
    const own = this.limits.kvPages - this.pagesHeld() - this.pagesReserved();
    const free = family ? Math.min(own, family.root.limits.kvPages - family.pages) : own;
    const room = (free + Math.floor(ctx.numComputed / pageSize)) * pageSize - ctx.length;
    if (room <= 0) {
      const bound = family && free < own ? `the family's limit of ${family.root.limits.kvPages}` : `the invocation's limit of ${this.limits.kvPages}`;
      throw new AbiError('limit-exceeded', `the context's ${ctx.length} tokens need more KV pages than ${bound} leaves`);
    }
    return room;
  }

  /** Everything set aside goes (the invocation ended). */
  releaseReservations(): void {
    for (const r of [...this.reservations]) r.release();
  }

  /** Distinct KV pages held by the invocation's contexts. */
  private pagesHeld(): number {
    const pages = new Set<number>();
    this.addPages(pages);
    return pages.size;
  }

  private addPages(pages: Set<number>): void {
    for (const { ctx } of this.contexts.values()) for (const p of ctx.pageTable) pages.add(p);
  }

  /** Distinct KV pages it and its family's other running members hold now (0 once it has ended). */
  kvPages(): Promise<number> {
    if (this.done) return Promise.resolve(0);
    const pages = new Set<number>();
    for (const m of this.family()) m.addPages(pages);
    return Promise.resolve(pages.size);
  }

  /** The root of its family (itself when it has no parent). */
  get root(): Invocation {
    let r: Invocation = this;
    while (r.parent) r = r.parent;
    return r;
  }

  /** Its family's running members: the root and every descendant not detached. */
  family(): Invocation[] {
    const out: Invocation[] = [];
    const visit = (i: Invocation) => {
      out.push(i);
      for (const k of i.kids) visit(k);
    };
    visit(this.root);
    return out;
  }

  /**
   * What its family uses together against the root's limits (tokens produced
   * and set aside, distinct pages held and pages set aside); null when it has
   * no family (no parent, no children), the common case.
   */
  private familyUse(): { root: Invocation; tokens: number; pages: number } | null {
    if (this.parent === null && this.kids.size === 0 && this.childTokens === 0) return null;
    const members = this.family();
    const pages = new Set<number>();
    let tokens = 0;
    let reserved = 0;
    for (const m of members) {
      tokens += m.numTokens + m.childTokens + m.reservedTokens;
      m.addPages(pages);
      reserved += m.pagesReserved();
    }
    return { root: members[0]!, tokens, pages: pages.size + reserved };
  }

  /** Pages set aside for running work that it has not allocated yet. */
  pagesReserved(): number {
    let n = 0;
    for (const r of this.reservations) n += Math.max(0, r.pages - Math.max(0, r.ctx.pageTable.length - r.startPages));
    return n;
  }

  /** Messages from the client waiting for the guest's session.receive (made on first use). */
  get inbox(): Mailbox {
    return (this.inboxBox ??= new Mailbox({ chars: 0, queues: 0 }, SESSION_LIMITS));
  }

  /** Queues a message from the client for session.receive; resolves to the messages now waiting unread. */
  deliver(message: string): Promise<number> {
    try {
      if (this.done) throw new SessionError('ended', `the invocation has ended (${this.state})`);
      if (message.length > SESSION_LIMITS.maxMessageChars) throw new SessionError('too_large', `a message is at most ${SESSION_LIMITS.maxMessageChars} characters, got ${message.length}`);
      try {
        this.inbox.put(message);
      } catch (err) {
        if (err instanceof MessageLimitError) throw new SessionError('queue_full', `the invocation has not read the messages it was sent: ${err.message.replace("the tenant's queues hold", 'they hold')}`);
        throw err;
      }
      return Promise.resolve(this.inbox.messages.length);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** Output events as the guest emits them; consumed once. Ends when the invocation ends. */
  events(): AsyncIterable<OutputEvent> {
    return this.output.drain();
  }

  /** Receives events as they are emitted instead of iterating (then `events()` sees none). */
  onEvent(listener: (e: OutputEvent) => void): void {
    this.output.listen(listener);
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

  /** An event from the guest: one whose name or size is not allowed is dropped (the guest side refused it already). */
  emitChecked(event: string, data: string): void {
    if (eventNameProblem(event) === null && sizeProblem('an event', data) === null) this.emit(event, data);
  }

  /** The guest's result, status and headers: a value that is not allowed is dropped, never applied (the guest side refused it already). */
  setResult(data: string): void {
    if (sizeProblem('the result', data) === null) this.data = data;
  }

  setStatus(status: number): void {
    if (statusProblem(status) !== null) return;
    this.status = status;
    this.answerVersion++;
  }

  setHeader(name: string, value: string): void {
    if (headerProblem(name, value) !== null) return;
    this.headers[name.toLowerCase()] = value;
    this.answerVersion++;
  }

  emit(event: string, data: string): void {
    if (this.done) return;
    this.output.push({ event, data });
  }

  /** Called by the host once everything the invocation held has been released. */
  settle(error: InvocationError | null): void {
    if (this.done) return;
    this.abort.abort();
    this.inboxBox?.clear();
    if (!error) {
      this.state = 'succeeded';
      this.resolve({ data: this.data, status: this.status, headers: this.headers });
    } else {
      this.state = error.kind === 'cancelled' ? 'cancelled' : 'failed';
      this.reject(error);
    }
    this.output.end();
  }
}

/** What one running forward pass or generation has set aside (Invocation.reserve); released once, when it ends. */
export class Reservation {
  readonly ctx: Context;
  /** Its worst case in pages, and the context's page count when it started. */
  readonly pages: number;
  readonly startPages: number;
  /** Tokens it may produce. */
  readonly tokens: number;
  private onRelease: ((r: Reservation) => void) | null;

  constructor(ctx: Context, pages: number, tokens: number, onRelease: (r: Reservation) => void) {
    this.ctx = ctx;
    this.pages = pages;
    this.startPages = ctx.pageTable.length;
    this.tokens = tokens;
    this.onRelease = onRelease;
  }

  release(): void {
    const done = this.onRelease;
    this.onRelease = null;
    done?.(this);
  }
}
