/** The ONNX Runtime inputs and output names of one batch (graph.ts names them). */
import * as ort from 'onnxruntime-node';
import type { Batch } from '../driver.ts';

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
  };
}

/** Outputs a batch fetches: always the greedy token and the new KV; full rows only when asked for. */
export function batchFetches(b: Batch): string[] {
  return ['best', 'best_logprob', 'new_kv', ...(b.needLogits ? ['logits'] : []), ...(b.needProbs ? ['probs'] : [])];
}
