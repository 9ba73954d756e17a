/**
 * The portable driver: the model's ONNX graph on ONNX Runtime's CPU provider,
 * in a worker thread, over a KV pool in shared memory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { LoadedModel } from '../../src/model/load.ts';
import { ModelLoadError } from '../../src/model/errors.ts';
import type { Batch, Driver, DriverInfo, StepResult } from '../driver.ts';
import { HEAD_DRAWS, HEAD_SIZE } from '../../src/engine/sampling.ts';
import { BY_MESSAGE, CRASH, createChannel, decodeError, decodeReply, encodeBatch, ERR, IN_SHARED_MEMORY, KIND, REP, REQ, SENT, type ChannelBuffers } from './channel.ts';
import { graphBuilder } from './graph.ts';
export { sessionOptions } from './session-options.ts';
import type { WorkerInit, WorkerReply, WorkerRequest } from './worker.ts';

const WORKER_URL = new URL('./worker.ts', import.meta.url);

/** Weights above this cannot go in one protocol buffer (under 2 GB). */
const MAX_INLINE_WEIGHT_BYTES = 1.5 * 1024 ** 3;

export interface PortableDriverOptions {
  numPages: number;
  pageSize: number;
  /** ONNX Runtime intra-op threads (default: 0, ONNX Runtime's choice). */
  threads?: number;
  /** Let ONNX Runtime's threads spin between runs (default true; see sessionOptions). */
  spinWait?: boolean;
  /**
   * Hand the graph to ONNX Runtime as files with the weights in external data
   * (default: whenever it has weights of 64 KiB or more). Measured on the
   * bench model: the driver starts in 0.6 s instead of 1.2–1.4 s (fp32) and
   * the process holds 282 MB instead of 377 (q4) and 607 instead of 962 (fp32)
   * once it is up, with no encoded copy of the weights made on this thread
   * and none left for the worker's garbage collector. Files are also the only
   * way past a protocol buffer's 2 GB.
   */
  externalData?: boolean;
}

interface Started {
  worker: Worker;
  channel: ChannelBuffers;
}

/** Builds the graph and starts a worker running it over `pool`; resolves once it is ready. */
async function startWorker(model: LoadedModel, options: PortableDriverOptions, pool: SharedArrayBuffer, restart = false): Promise<Started> {
  const c = model.config;
  const numSlots = options.numPages * options.pageSize;
  const kvPlanes = c.numLayers * 2 * c.numKvHeads;
  const builder = graphBuilder({ config: c, weights: model.weights, numSlots });
  let graphFile: string | null = null;
  let graphDir: string | null = null;
  if (options.externalData ?? builder.externalBytes > 0) {
    try {
      graphDir = mkdtempSync(join(tmpdir(), 'pie-graph-'));
      builder.save(join(graphDir, 'model.onnx'));
      graphFile = join(graphDir, 'model.onnx');
    } catch (err) {
      // No room in the temporary folder: one buffer instead, where the weights fit in a protocol buffer.
      if (graphDir) rmSync(graphDir, { recursive: true, force: true });
      graphDir = null;
      if (options.externalData || builder.externalBytes > MAX_INLINE_WEIGHT_BYTES) throw new ModelLoadError(`cannot write the model's graph to ${tmpdir()} (set TMPDIR to a folder with room for the weights): ${(err as Error).message}`);
    }
  }
  const graph: Uint8Array | string = graphFile ?? builder.encode();
  const channel = createChannel(16 * 1024 * 1024, 4096, Math.min(HEAD_SIZE, c.vocabSize), HEAD_DRAWS);
  const init: WorkerInit = { graph, channel, pool, restart, poolRows: kvPlanes * numSlots, headDim: c.headDim, kvPlanes, maskWords: Math.ceil(c.vocabSize / 32), threads: options.threads ?? 0, spinWait: options.spinWait ?? true };
  const worker = new Worker(WORKER_URL, {
    workerData: init,
    transferList: typeof graph === 'string' ? [] : [graph.buffer as ArrayBuffer],
  });
  await new Promise<void>((resolve, reject) => {
    const onMessage = (msg: WorkerReply) => {
      if (msg.type === 'ready') {
        worker.off('error', onError);
        worker.off('message', onMessage);
        resolve();
      }
    };
    const onError = (err: Error) => reject(new Error(`driver worker failed to start: ${err.message}`));
    worker.on('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', (code) => reject(new Error(`driver worker exited with code ${code} while starting`)));
  }).finally(() => {
    // ONNX Runtime has read (or mapped) the files by now.
    if (graphDir) rmSync(graphDir, { recursive: true, force: true });
  });
  return { worker, channel };
}

export class PortableDriver implements Driver {
  readonly info: DriverInfo;
  /** Milliseconds ONNX Runtime spent in the last run, and the KV copies and writes around it (measured in the worker). */
  lastRunMs = 0;
  lastWriteMs = 0;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();
  private failure: Error | null = null;
  private closed = false;
  private worker!: Worker;
  private channel!: ChannelBuffers;
  private ctl!: Int32Array;
  /** A crash asked for while the worker was dead: its successor gets it (crashAfterNextRun). */
  private crashPending = false;
  /** Rejects when the worker fails, to wake a run waiting on the shared-memory lane. */
  private failed!: Promise<never>;
  private rejectFailed!: (err: Error) => void;
  /** Runs go one at a time (the lane has one request area). */
  private last: Promise<unknown> = Promise.resolve();
  /** The KV pool, shared with the worker (benchmarks replay batches over it). */
  readonly pool: SharedArrayBuffer;
  private readonly model: LoadedModel;
  private readonly options: PortableDriverOptions;

  private constructor(model: LoadedModel, options: PortableDriverOptions, info: DriverInfo, pool: SharedArrayBuffer, started: Started) {
    this.model = model;
    this.options = options;
    this.info = info;
    this.pool = pool;
    this.attach(started);
  }

  static async create(model: LoadedModel, options: PortableDriverOptions): Promise<PortableDriver> {
    const c = model.config;
    const numSlots = options.numPages * options.pageSize;
    const kvPlanes = c.numLayers * 2 * c.numKvHeads;
    const pool = new SharedArrayBuffer(kvPlanes * numSlots * c.headDim * 4);
    const started = await startWorker(model, options, pool);
    return new PortableDriver(model, options, {
      name: 'portable',
      vocabSize: c.vocabSize,
      numSlots,
      pageSize: options.pageSize,
      numPages: options.numPages,
      bytesPerSlot: kvPlanes * c.headDim * 4,
    }, pool, started);
  }

  /**
   * After its worker died (not after close): a new worker on the same KV
   * pool, so every context's keys and values survive. The step that was
   * running failed with it; what it wrote belongs to that step's work alone
   * (failed too), so nothing else is touched.
   */
  async recover(): Promise<boolean> {
    if (!this.failure || this.closed) return false;
    const started = await startWorker(this.model, this.options, this.pool, true);
    if (this.closed) {
      await started.worker.terminate(); // closed while it started
      return false;
    }
    this.attach(started);
    return true;
  }

  private attach({ worker, channel }: Started): void {
    this.worker = worker;
    this.channel = channel;
    this.ctl = new Int32Array(channel.ctl);
    if (this.crashPending) Atomics.store(this.ctl, CRASH, 1);
    this.crashPending = false;
    this.failure = null;
    this.last = Promise.resolve();
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => undefined);
    worker.on('message', (msg: WorkerReply) => {
      if (msg.type === 'ready') return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.type === 'error') p.reject(new Error(`driver: ${msg.message}`));
      else p.resolve(msg);
    });
    // Only this worker's death fails the driver (a replaced one's late exit does not).
    const dead = (err: Error) => {
      if (this.worker === worker) this.fail(err);
    };
    worker.on('error', dead);
    worker.on('exit', (code) => dead(new Error(`driver worker exited with code ${code}`)));
  }

  run(batch: Batch): Promise<StepResult> {
    // A worker that died between steps is replaced before this one, which then runs as usual.
    const run = this.last.then(async () => {
      if (this.failure && !this.closed && this.failure.message.startsWith('driver worker exited')) await this.recover();
      return this.runNow(batch);
    });
    this.last = run.catch(() => undefined);
    return run;
  }

  private async runNow(batch: Batch): Promise<StepResult> {
    if (this.failure) throw this.failure;
    const headSize = Math.min(HEAD_SIZE, this.info.vocabSize);
    if (encodeBatch(batch, this.channel, headSize)) {
      const seq = this.wake(IN_SHARED_MEMORY);
      while (Atomics.load(this.ctl, REP) !== seq) {
        const wait = Atomics.waitAsync(this.ctl, REP, seq - 1);
        if (wait.async) await Promise.race([wait.value, this.failed]);
      }
      const err = Atomics.load(this.ctl, ERR);
      if (err) throw new Error(`driver: ${decodeError(this.channel.reply, err)}`);
      const S = batch.sampleIndex.length;
      const head = batch.head ? { size: headSize, draws: batch.head.uniforms.length / Math.max(1, S) } : null;
      const { result, runMs, writeMs } = decodeReply(this.channel.reply, S, head);
      this.lastRunMs = runMs;
      this.lastWriteMs = writeMs;
      return result;
    }
    const reply = await this.request({ type: 'run', id: this.nextId++, batch });
    if (reply.type !== 'done' || !reply.result) throw new Error('driver: run returned no result');
    this.lastRunMs = reply.runMs ?? 0;
    this.lastWriteMs = reply.writeMs ?? 0;
    return reply.result;
  }

  /**
   * Fault injection (the soak, tests): the worker dies right after its next
   * run, before it writes that step's KV or replies, as a fault in its own
   * JavaScript would end it. Terminating the worker from outside instead can
   * abort the whole process: when it lands while ONNX Runtime is in a run,
   * onnxruntime-node's conversion of the outputs throws a C++ exception
   * (Napi::Error) that nothing catches.
   */
  crashAfterNextRun(): void {
    if (this.failure) this.crashPending = true; // dead already: its successor crashes after its first run
    else Atomics.store(this.ctl, CRASH, 1);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.failure) return;
    await this.last; // a run in flight finishes first: the worker answers one request at a time
    await this.request({ type: 'close', id: this.nextId++ }).catch(() => undefined);
    this.fail(new Error('driver closed'));
    await this.worker.terminate();
  }

  private request(msg: WorkerRequest): Promise<WorkerReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.set(msg.id, { resolve, reject });
      Atomics.add(this.ctl, SENT, 1);
      this.worker.postMessage(msg);
      this.wake(BY_MESSAGE);
    });
  }

  /** Bumps the request number (the worker blocks on it between requests); returns it. */
  private wake(kind: number): number {
    Atomics.store(this.ctl, KIND, kind);
    const seq = Atomics.add(this.ctl, REQ, 1) + 1;
    Atomics.notify(this.ctl, REQ);
    return seq;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.rejectFailed(err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
