/** The ONNX Runtime inputs and output names of one batch (graph.ts names them). */
import * as ort from 'onnxruntime-node';
import { HEAD_DRAWS } from '../../src/engine/sampling.ts';
import type { Batch, HeadOutputs } from '../driver.ts';

/** Masks of batches that carry none: every token allowed (one buffer, grown as needed, never copied per step). */
let allowAll = new Uint32Array(0);

function tokenMaskFeed(b: Batch, maskWords: number): ort.Tensor {
  const S = b.sampleIndex.length;
  if (b.maskWords > 0) return new ort.Tensor('uint32', b.tokenMask, [S, b.maskWords]);
  if (allowAll.length < S * maskWords) allowAll = new Uint32Array(S * maskWords).fill(0xffffffff);
  return new ort.Tensor('uint32', allowAll.subarray(0, S * maskWords), [S, maskWords]);
}

/** `maskWords` is the graph's (ceil(vocabulary / 32)), for batches that carry no token masks. */
export function batchFeeds(b: Batch, pool: ort.Tensor, maskWords: number): Record<string, ort.Tensor> {
  const i32 = (data: Int32Array, dims: number[]) => new ort.Tensor('int32', data, dims);
  return {
    token_ids: i32(b.tokenIds, [b.numTokens]),
    positions: i32(b.positions, [b.numTokens]),
    kv_pool: pool,
    kv_gather: i32(b.kvGather, [b.kvGather.length]),
    key_index: i32(b.keyIndex, [b.numRows, b.keyLen]),
    query_index: i32(b.queryIndex, [b.numRows, b.queryLen]),
    token_index: i32(b.tokenIndex, [b.numTokens]),
    attn_mask: new ort.Tensor('float32', b.mask, [b.numRows, b.queryLen, b.keyLen]),
    sample_index: i32(b.sampleIndex, [b.sampleIndex.length]),
    inv_temperature: new ort.Tensor('float32', b.invTemperature, [b.invTemperature.length]),
    token_mask: tokenMaskFeed(b, maskWords),
    want_logits: new ort.Tensor('bool', Uint8Array.of(b.needLogits ? 1 : 0), []),
    want_head: new ort.Tensor('bool', Uint8Array.of(b.head ? 1 : 0), []),
    ...headFeeds(b),
  };
}

/** The head's inputs; placeholders when the step computes no head (the graph still takes every input). */
function headFeeds(b: Batch): Record<string, ort.Tensor> {
  const S = b.sampleIndex.length;
  const h = b.head;
  const A = h ? h.adjustWidth : 1;
  return {
    adjust_ids: new ort.Tensor('int64', h ? BigInt64Array.from(h.adjustIds, BigInt) : new BigInt64Array(S), [S, A]),
    adjust_values: new ort.Tensor('float32', h ? h.adjustValues : new Float32Array(S), [S, A]),
    min_p: new ort.Tensor('float32', h ? h.minP : new Float32Array(S), [S]),
    draw_u: new ort.Tensor('float64', h ? h.uniforms : new Float64Array(S * HEAD_DRAWS), [S, h ? h.uniforms.length / Math.max(1, S) : HEAD_DRAWS]),
    full_rows: new ort.Tensor('int64', h ? BigInt64Array.from(h.fullRows, BigInt) : new BigInt64Array(0), [h ? h.fullRows.length : 0]),
  };
}

/** Outputs a batch fetches: always the greedy token and the new KV; full rows and the head only when asked for. */
export function batchFetches(b: Batch): string[] {
  return ['best', 'best_logprob', 'new_kv', ...(b.needLogits ? ['logits'] : []), ...(b.head ? ['probs', 'head_ids', 'head_p', 'draw_token', 'draws'] : [])];
}

/** The head's outputs as the engine takes them. */
export function headOutputs(out: Record<string, ort.Tensor>): HeadOutputs {
  const ints = (t: ort.Tensor) => Int32Array.from(t.data as BigInt64Array, Number);
  return { ids: ints(out.head_ids!), p: out.head_p!.data as Float32Array, drawToken: ints(out.draw_token!), draws: out.draws!.data as Float64Array };
}
