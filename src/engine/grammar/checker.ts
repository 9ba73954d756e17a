/**
 * Compiles untrusted grammars in a worker first (check-worker.ts): a grammar
 * xgrammar rejects is refused with the library's message, and one that takes
 * longer than the limit is refused without the engine thread ever waiting
 * for it. The worker is replaced after a timeout and after every so many
 * aborts (each leaks some of its WebAssembly stack).
 *
 *   check(source) ─► queue ─► worker compiles ─► ok (ms) | message | timeout → new worker
 */
import { Worker } from 'node:worker_threads';
import type { CheckReply, CheckRequest, GrammarVocabulary } from './check-worker.ts';
import type { GrammarSource } from './source.ts';

export type CheckResult = { ok: true; ms: number } | { ok: false; message: string };

const ABORTS_PER_WORKER = 50;

interface Pending {
  id: number;
  key: string;
  source: GrammarSource;
  timeoutMs: number;
  resolve: (r: CheckResult) => void;
}

export class GrammarChecker {
  private worker: Worker | null = null;
  private numAborts = 0;
  private nextId = 1;
  private readonly vocabs = new Map<string, GrammarVocabulary>();
  private readonly queue: Pending[] = [];
  private current: { p: Pending; timer: NodeJS.Timeout } | null = null;
  /** Workers started (tests read it). */
  numWorkers = 0;

  /** Registers a model's vocabulary under a key (sent to every worker). */
  addVocabulary(key: string, vocab: GrammarVocabulary): void {
    this.vocabs.set(key, vocab);
    this.worker?.postMessage({ t: 'vocab', key, vocab } satisfies CheckRequest);
  }

  check(key: string, source: GrammarSource, timeoutMs: number): Promise<CheckResult> {
    return new Promise((resolve) => {
      this.queue.push({ id: this.nextId++, key, source, timeoutMs, resolve });
      this.pump();
    });
  }

  /** Stops the worker; checks still queued are refused. */
  async close(): Promise<void> {
    for (const p of this.queue.splice(0)) p.resolve({ ok: false, message: 'the server is shutting down' });
    if (this.current) this.finish({ ok: false, message: 'the server is shutting down' });
    const w = this.worker;
    this.worker = null;
    await w?.terminate();
  }

  private pump(): void {
    if (this.current || this.queue.length === 0) return;
    const p = this.queue.shift()!;
    const worker = this.ensureWorker();
    const timer = setTimeout(() => {
      this.finish({ ok: false, message: `the grammar took longer than ${p.timeoutMs} ms to compile` });
      this.replaceWorker();
    }, p.timeoutMs);
    timer.unref();
    this.current = { p, timer };
    worker.postMessage({ t: 'check', id: p.id, key: p.key, source: p.source } satisfies CheckRequest);
  }

  private finish(r: CheckResult): void {
    const cur = this.current;
    if (!cur) return;
    this.current = null;
    clearTimeout(cur.timer);
    cur.p.resolve(r);
    queueMicrotask(() => this.pump());
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./check-worker.ts', import.meta.url));
    worker.unref();
    this.numWorkers++;
    this.numAborts = 0;
    worker.on('message', (r: CheckReply) => {
      if (worker !== this.worker || !this.current || r.id !== this.current.p.id) return;
      if (!r.ok && r.aborted && ++this.numAborts >= ABORTS_PER_WORKER) this.replaceWorker();
      this.finish(r.ok ? { ok: true, ms: r.ms } : { ok: false, message: r.message });
    });
    const onGone = (err?: Error) => {
      if (worker !== this.worker) return;
      this.worker = null;
      this.finish({ ok: false, message: `the grammar checker stopped${err ? `: ${err.message}` : ''}` });
    };
    worker.on('error', onGone);
    worker.on('exit', () => onGone());
    for (const [key, vocab] of this.vocabs) worker.postMessage({ t: 'vocab', key, vocab } satisfies CheckRequest);
    this.worker = worker;
    return worker;
  }

  private replaceWorker(): void {
    const w = this.worker;
    this.worker = null;
    void w?.terminate();
  }
}
