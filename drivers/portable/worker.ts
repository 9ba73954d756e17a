/**
 * The ONNX Runtime thread. `session.run` blocks the thread it runs on, so it
 * lives here, away from the engine's event loop. The KV pool is a
 * SharedArrayBuffer that the engine thread allocated; this thread passes it
 * to every run without copying and writes each step's new keys and values
 * into it before replying.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { Batch, StepResult } from '../driver.ts';
import { CRASH, decodeBatch, encodeError, encodeReply, ERR, IN_SHARED_MEMORY, KIND, REP, REQ, SENT, type ChannelBuffers } from './channel.ts';
import { batchFeeds, batchFetches, headOutputs } from './feeds.ts';
import { sessionOptions } from './session-options.ts';

export interface WorkerInit {
  /** The model as bytes, or the path of a model file with external data. */
  graph: Uint8Array | string | null;
  channel: ChannelBuffers;
  pool: SharedArrayBuffer;
  poolRows: number;
  /** Started again after its predecessor died: the pool holds live KV, not to be cleared. */
  restart?: boolean;
  headDim: number;
  /** Rows of new_kv per token: layers × 2 × kv heads. */
  kvPlanes: number;
  /** Words of a row's token mask in the graph: ceil(vocabulary / 32). */
  maskWords: number;
  threads: number;
  spinWait: boolean;
}

export type WorkerRequest =
  | { type: 'run'; id: number; batch: Batch }
  | { type: 'close'; id: number };

export type WorkerReply =
  | { type: 'ready' }
  | { type: 'done'; id: number; result?: StepResult; runMs?: number; writeMs?: number }
  | { type: 'error'; id: number; message: string };

const init = workerData as WorkerInit;
const port = parentPort!;
const pool = new Float32Array(init.pool);
// Touch every page of the pool now, so that first writes during serving do
// not pay the operating system's page faults (the budget is committed up front).
if (!init.restart) pool.fill(0); // a restarted worker runs over the pool as its predecessor left it
const poolTensor = new ort.Tensor('float32', pool, [init.poolRows, init.headDim]);

const graph = init.graph!;
const options = sessionOptions(init.threads, init.spinWait);
const session = typeof graph === 'string' ? await ort.InferenceSession.create(graph, options) : await ort.InferenceSession.create(graph, options);
init.graph = null; // ONNX Runtime holds its own copy of the weights now
port.on('message', (msg: WorkerRequest) => void handleMessage(msg));
port.postMessage({ type: 'ready' } satisfies WorkerReply);

/**
 * The worker's loop: block (synchronously, the fastest wake-up) until the
 * engine bumps the request number; let the event loop handle any messages the
 * engine sent; then run the batch it left in shared memory, if that is what
 * the bump was for.
 */
const ctl = new Int32Array(init.channel.ctl);
let handled = 0;
let closed = false;
let seen = 0;
for (;;) {
  Atomics.wait(ctl, REQ, seen);
  seen = Atomics.load(ctl, REQ);
  // Let the event loop deliver every message the engine has sent so far.
  while (handled < Atomics.load(ctl, SENT)) await new Promise((resolve) => setImmediate(resolve));
  if (closed) break;
  if (Atomics.load(ctl, KIND) !== IN_SHARED_MEMORY) continue;
  try {
    const { result, runMs, writeMs } = await runBatch(decodeBatch(init.channel.request));
    encodeReply(init.channel.reply, result, runMs, writeMs);
    Atomics.store(ctl, ERR, 0);
  } catch (err) {
    Atomics.store(ctl, ERR, Math.max(1, encodeError(init.channel.reply, (err as Error).message)));
  }
  Atomics.store(ctl, REP, seen);
  Atomics.notify(ctl, REP);
}

function handleMessage(msg: WorkerRequest): Promise<void> {
  return handle(msg).finally(() => handled++);
}

async function handle(msg: WorkerRequest): Promise<void> {
  try {
    if (msg.type === 'run') {
      const { result, runMs, writeMs } = await runBatch(msg.batch);
      const reply: WorkerReply = { type: 'done', id: msg.id, result, runMs, writeMs };
      // Only the large rows are transferred; small arrays are cheaper to copy.
      const transfer = [result.logits, result.probs].filter((a) => a !== null).map((a) => a.buffer as ArrayBuffer);
      port.postMessage(reply, transfer);
    } else {
      closed = true;
      await session.release();
      port.postMessage({ type: 'done', id: msg.id } satisfies WorkerReply);
      port.close();
    }
  } catch (err) {
    port.postMessage({ type: 'error', id: msg.id, message: (err as Error).message } satisfies WorkerReply);
  }
}

async function runBatch(b: Batch): Promise<{ result: StepResult; runMs: number; writeMs: number }> {
  const t0 = performance.now();
  if (b.copies) copySlots(b.copies.from, b.copies.to);
  const feeds = batchFeeds(b, poolTensor, init.maskWords);
  const t1 = performance.now();
  const out = await session.run(feeds, batchFetches(b));
  // Dies mid-step, as a fault in this thread's JavaScript would end it (never while ONNX Runtime is in a run).
  if (Atomics.load(ctl, CRASH) === 1) process.exit(70);
  const t2 = performance.now();
  writeNewKv(out.new_kv!.data as Float32Array, b.writeSlots, b.numTokens);
  const result: StepResult = {
    logits: b.needLogits ? (out.logits!.data as Float32Array) : null,
    probs: b.head ? (out.probs!.data as Float32Array) : null,
    head: b.head ? headOutputs(out) : null,
    best: Int32Array.from(out.best!.data as BigInt64Array, Number),
    bestLogprob: out.best_logprob!.data as Float32Array,
  };
  return { result, runMs: t2 - t1, writeMs: t1 - t0 + performance.now() - t2 };
}

/** new_kv is [T, planes, HD]: token t's block goes to the pool at slot(t). */
function writeNewKv(newKv: Float32Array, slots: Int32Array, numTokens: number): void {
  const block = init.kvPlanes * init.headDim;
  for (let t = 0; t < numTokens; t++) pool.set(newKv.subarray(t * block, (t + 1) * block), slots[t]! * block);
}

function copySlots(from: Int32Array, to: Int32Array): void {
  const block = init.kvPlanes * init.headDim;
  for (let i = 0; i < from.length; i++) pool.copyWithin(to[i]! * block, from[i]! * block, (from[i]! + 1) * block);
}
