/**
 * Checks and transpiles components on a thread of their own, into the same
 * cache folder the host loads from (component-store.ts): an upload costs the
 * main thread and the engine thread nothing but a cache hit afterwards.
 * One worker, started on first use, takes loads one at a time; it ends when
 * closed, or after a minute without work.
 */
import { Worker } from 'node:worker_threads';
import { ComponentLoadError, type StoredComponent } from './component-store.ts';

const WORKER = new URL('./component-loader-worker.ts', import.meta.url);
const IDLE_MS = 60_000;

export interface LoadRequest {
  id: number;
  bytes: Uint8Array;
}

export type LoadReply = { id: number; ok: true; component: StoredComponent } | { id: number; ok: false; name: string; message: string };

export class ComponentLoader {
  readonly cacheDir: string;
  private worker: Worker | null = null;
  /** Loads sent and not answered, with the worker they went to. */
  private readonly pending = new Map<number, { worker: Worker; resolve: (c: StoredComponent) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private idle: NodeJS.Timeout | null = null;

  constructor(cacheDir: string) {
    this.cacheDir = cacheDir;
  }

  /** Checks (world, imports) and transpiles `bytes`; rejects with a ComponentLoadError naming what is wrong. */
  load(bytes: Uint8Array): Promise<StoredComponent> {
    const worker = this.start();
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { worker, resolve, reject });
      worker.postMessage({ id, bytes } satisfies LoadRequest);
    });
  }

  async close(): Promise<void> {
    if (this.idle) clearTimeout(this.idle);
    const w = this.worker;
    this.worker = null;
    await w?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER, { workerData: { cacheDir: this.cacheDir }, name: 'pie-component-loader' });
    worker.on('message', (r: LoadReply) => {
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      if (r.ok) p?.resolve(r.component);
      else p?.reject(r.name === 'ComponentLoadError' ? new ComponentLoadError(r.message) : new Error(r.message));
      if (this.pending.size === 0 && this.worker === worker) this.idle = setTimeout(() => void this.close(), IDLE_MS).unref();
    });
    // A worker that ends fails only the loads it was given (a new one may be serving others already).
    const fail = (why: string) => {
      if (this.worker === worker) this.worker = null;
      for (const [id, p] of this.pending) {
        if (p.worker !== worker) continue;
        this.pending.delete(id);
        p.reject(new Error(`the component loader stopped: ${why}`));
      }
    };
    worker.on('error', (err) => fail(err.message));
    worker.on('exit', (code) => fail(`it exited with code ${code}`));
    worker.unref();
    this.worker = worker;
    return worker;
  }
}
