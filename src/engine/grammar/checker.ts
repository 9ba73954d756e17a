/**
 * Compiles untrusted grammars in a worker first (check-worker.ts): a grammar
 * xgrammar rejects is refused with the library's message, and one that takes
 * longer than the limit is refused without the engine thread ever compiling
 * it. A rejection aborts the library and leaks part of its stack (a deeply
 * nested schema leaks enough in a few aborts to break it), so the worker is
 * replaced after every abort and after a timeout; the next one is started at
 * once and warmed (its vocabularies' tokenizer info built) before it is given
 * a check, so a check's time limit counts its compile only.
 *
 *   check(source) ─► queue (bounded) ─► warm worker compiles ─► ok (ms) | message
 *                                         abort / timeout ─► replaced, warmed again
 */
import { Worker } from 'node:worker_threads';
import type { CheckReply, CheckRequest } from './check-worker.ts';
import type { GrammarSource } from './source.ts';
import type { GrammarVocabulary } from './xgrammar.ts';

export type CheckResult = { ok: true; ms: number } | { ok: false; message: string };

/** Checks waiting beyond this are refused (each may take up to its time limit). */
const MAX_QUEUED = 256;

interface Pending {
  id: number;
  key: string;
  source: GrammarSource;
  timeoutMs: number;
  resolve: (r: CheckResult) => void;
}

interface Slot {
  worker: Worker;
  /** Resolved once the worker has built the tokenizer info of every vocabulary sent to it. */
  ready: boolean;
  warmId: number;
}

export class GrammarChecker {
  private slot: Slot | null = null;
  private nextId = 1;
  private readonly vocabs = new Map<string, GrammarVocabulary>();
  private readonly queue: Pending[] = [];
  private current: { p: Pending; timer: NodeJS.Timeout } | null = null;
  private closed = false;
  /** Workers that went away before they were ready, in a row. */
  private numFailedStarts = 0;
  /** Workers started (tests read it). */
  numWorkers = 0;

  /** Forgets a vocabulary (its engine closed). */
  removeVocabulary(key: string): void {
    this.vocabs.delete(key);
    this.slot?.worker.postMessage({ t: 'forget', key } satisfies CheckRequest);
  }

  /** Registers a model's vocabulary under a key (every worker builds its tokenizer info before checking). */
  addVocabulary(key: string, vocab: GrammarVocabulary): void {
    this.vocabs.set(key, vocab);
    if (this.slot) {
      this.slot.worker.postMessage({ t: 'vocab', key, vocab } satisfies CheckRequest);
      this.warm(this.slot);
    }
  }

  check(key: string, source: GrammarSource, timeoutMs: number): Promise<CheckResult> {
    if (this.closed) return Promise.resolve({ ok: false, message: 'the server is shutting down' });
    if (this.queue.length >= MAX_QUEUED) return Promise.resolve({ ok: false, message: `too many grammars are waiting to compile (${MAX_QUEUED}); try again later` });
    return new Promise((resolve) => {
      this.queue.push({ id: this.nextId++, key, source, timeoutMs, resolve });
      this.pump();
    });
  }

  /** Stops the worker; checks still queued are refused. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.resolve({ ok: false, message: 'the server is shutting down' });
    if (this.current) this.finish({ ok: false, message: 'the server is shutting down' });
    const slot = this.slot;
    this.slot = null;
    await slot?.worker.terminate();
  }

  private pump(): void {
    if (this.current || this.queue.length === 0 || this.closed) return;
    const slot = this.ensureWorker();
    if (!slot.ready) return; // pumped again when it is
    const p = this.queue.shift()!;
    const timer = setTimeout(() => {
      this.replaceWorker();
      this.finish({ ok: false, message: `the grammar took longer than ${p.timeoutMs} ms to compile` });
    }, p.timeoutMs);
    timer.unref();
    this.current = { p, timer };
    slot.worker.postMessage({ t: 'check', id: p.id, key: p.key, source: p.source } satisfies CheckRequest);
  }

  private finish(r: CheckResult): void {
    const cur = this.current;
    if (!cur) return;
    this.current = null;
    clearTimeout(cur.timer);
    cur.p.resolve(r);
    queueMicrotask(() => this.pump());
  }

  private ensureWorker(): Slot {
    if (this.slot) return this.slot;
    const worker = new Worker(new URL('./check-worker.ts', import.meta.url));
    worker.unref();
    this.numWorkers++;
    const slot: Slot = { worker, ready: false, warmId: 0 };
    worker.on('message', (r: CheckReply) => {
      if (slot !== this.slot) return;
      if (r.t === 'warm') {
        if (r.id === slot.warmId) {
          slot.ready = true;
          this.numFailedStarts = 0;
          this.pump();
        }
        return;
      }
      if (!this.current || r.id !== this.current.p.id) return;
      if (!r.ok && r.aborted) this.replaceWorker(); // its library leaked stack: never use it again
      this.finish(r.ok ? { ok: true, ms: r.ms } : { ok: false, message: r.message });
    });
    const onGone = (err?: Error) => {
      if (slot !== this.slot) return;
      this.slot = null;
      const why = `the grammar checker stopped${err ? `: ${err.message}` : ''}`;
      if (!slot.ready && ++this.numFailedStarts >= 3) {
        // It cannot start: refuse what waits rather than restart for ever (the next check tries again).
        this.numFailedStarts = 0;
        for (const p of this.queue.splice(0)) p.resolve({ ok: false, message: why });
      }
      this.finish({ ok: false, message: why });
      queueMicrotask(() => this.pump()); // what still waits gets a new worker
    };
    worker.on('error', onGone);
    worker.on('exit', () => onGone());
    this.slot = slot;
    for (const [key, vocab] of this.vocabs) worker.postMessage({ t: 'vocab', key, vocab } satisfies CheckRequest);
    this.warm(slot);
    return slot;
  }

  /** Asks the worker to build what its vocabularies need; it is ready when it answers the latest ask. */
  private warm(slot: Slot): void {
    slot.ready = false;
    slot.warmId = this.nextId++;
    slot.worker.postMessage({ t: 'warm', id: slot.warmId } satisfies CheckRequest);
  }

  /** Throws the worker away and starts its successor warming at once. */
  private replaceWorker(): void {
    const slot = this.slot;
    this.slot = null;
    void slot?.worker.terminate();
    if (!this.closed) this.ensureWorker();
  }
}
