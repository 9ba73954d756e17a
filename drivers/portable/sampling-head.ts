/**
 * The sampling head: the vocabulary-wide part of sampling, in the graph, so
 * that the host reads a few hundred numbers per sampled row instead of a 32k
 * row. src/engine/sampling.ts defines the procedure these numbers serve and
 * checks, before trusting them, that they decide the token exactly as the
 * full row would.
 *
 * Inputs: adjust_ids [S, A] i64 and adjust_values [S, A] f32 (sparse logit
 * adjustments, i.e. bias and penalties; padding adds 0 to token 0),
 * min_p [S] f32 (0: off), draw_u [S, R] f64 (each row's next R uniforms),
 * full_rows [F] i64 (rows whose whole distribution the step returns).
 *
 * Each row's distribution is p = softmax((masked logits + adjustments) ×
 * inv_temperature) with tokens under min_p × max(p) set to 0, and each
 * token's weight is w = floor(p·2⁴⁰): integers, exact in float32 and summed
 * exactly in float64, so the graph and the host find the same token for the
 * same uniform. Outputs:
 *   probs [F, V] f32: p of the rows in full_rows;
 *   head_ids [S, H] i64, head_p [S, H] f32: the H likeliest tokens, likeliest first, ties by lower id;
 *   draw_token [S, R] i64, draws [S, 1 + 3R] f64: the weight of the tail (the tokens
 *     outside the head), then for each uniform u the tail token at floor(u·W) less the
 *     head's weight (W: all weights), counting in token-id order: the tail weight before
 *     it, its weight, and the probability ranked above it (likelier, or as likely with a
 *     lower id), summed in float32 blocks of 256, so within 255·2⁻²⁴ of its value.
 */
import { HEAD_SIZE, TAIL_BLOCK as BLOCK, WEIGHT_SCALE } from '../../src/engine/sampling.ts';
import { DType, type GraphBuilder, type GraphIO } from './onnx-builder.ts';

export function samplingHeadOutputs(vocab: number): GraphIO[] {
  const H = Math.min(HEAD_SIZE, vocab);
  return [
    { name: 'probs', type: DType.FLOAT, shape: ['F', vocab] },
    { name: 'head_ids', type: DType.INT64, shape: ['S', H] },
    { name: 'head_p', type: DType.FLOAT, shape: ['S', H] },
    { name: 'draw_token', type: DType.INT64, shape: ['S', 'R'] },
    { name: 'draws', type: DType.DOUBLE, shape: ['S', 'D'] },
  ];
}

/** The else branch: the same outputs, empty. */
export function samplingHeadEmpty(b: GraphBuilder, vocab: number): string[] {
  const H = Math.min(HEAD_SIZE, vocab);
  return [b.empty(DType.FLOAT, [0, vocab]), b.empty(DType.INT64, [0, H]), b.empty(DType.FLOAT, [0, H]), b.empty(DType.INT64, [0, 0]), b.empty(DType.DOUBLE, [0, 0])];
}

/** Builds the head in `b` (a branch of `g`, where its inputs are declared); returns its outputs' values in `samplingHeadOutputs` order. */
export function samplingHead(b: GraphBuilder, g: GraphBuilder, logits: string, invTemperature: string, vocab: number): string[] {
  const shape = (...dims: number[]) => b.constInt64(dims);
  const H = Math.min(HEAD_SIZE, vocab);
  const nb = Math.ceil(vocab / BLOCK);
  const adjustIds = g.input('adjust_ids', DType.INT64, ['S', 'A']);
  const adjustValues = g.input('adjust_values', DType.FLOAT, ['S', 'A']);
  const minP = g.input('min_p', DType.FLOAT, ['S']);
  const drawU = g.input('draw_u', DType.DOUBLE, ['S', 'R']);
  const fullRows = g.input('full_rows', DType.INT64, ['F']);
  const toDouble = (x: string) => b.op('Cast', [x], { to: DType.DOUBLE });
  const unsq = (x: string, axis: number) => b.op('Unsqueeze', [x, shape(axis)]);
  const zeroDouble = b.constDouble(0);

  // Adjustments and min-p only when a row has some: each costs a pass over [S, V]. (Each branch
  // makes its output, so that the branch not taken costs no copy.)
  const any = (x: string) => b.op('Greater', [b.op('ReduceMax', [b.op('Abs', [x])], { keepdims: 0 }), b.constFloat(0)]);
  const scale = (t: GraphBuilder) => t.op('Mul', [logits, unsq(invTemperature, 1)]);
  const [scaled] = b.valuesIf(
    any(adjustValues),
    [DType.FLOAT],
    (t) => [t.op('ScatterElements', [scale(t), adjustIds, t.op('Mul', [adjustValues, unsq(invTemperature, 1)])], { axis: 1, reduction: 'add' })],
    (t) => [scale(t)],
  ) as [string];
  const [p] = b.valuesIf(
    any(minP),
    [DType.FLOAT],
    (t) => {
      const soft = t.op('Softmax', [scaled], { axis: 1 });
      const floor = t.op('Mul', [unsq(minP, 1), t.op('ReduceMax', [soft, shape(1)], { keepdims: 1 })]);
      return [t.op('Mul', [soft, t.op('Cast', [t.op('GreaterOrEqual', [soft, floor])], { to: DType.FLOAT })])];
    },
    (t) => [t.op('Softmax', [scaled], { axis: 1 })],
  ) as [string]; // [S, V]
  const [headP, headIds] = b.opN('TopK', [p, shape(H)], 2, { axis: 1, largest: 1, sorted: 1 }) as [string, string];

  // Weights, exact: p·2⁴⁰ is exact in float32, so is its floor; sums of such integers are exact in float64.
  const weight = (x: string) => toDouble(b.op('Floor', [b.op('Mul', [x, b.constFloat(WEIGHT_SCALE)])]));
  const w = weight(p); // [S, V]
  const headW = weight(headP); // [S, H]
  const padded = nb * BLOCK === vocab ? w : b.op('Pad', [w, shape(0, 0, 0, nb * BLOCK - vocab), zeroDouble]);
  const blocks3 = b.op('Reshape', [padded, shape(0, nb, BLOCK)]); // [S, nb, BLOCK]
  const allInBlocks = b.op('ReduceSum', [blocks3, shape(2)], { keepdims: 0 }); // [S, nb]
  const headBlock = b.op('Div', [headIds, b.constInt64([BLOCK])]); // [S, H]
  const headInBlocks = b.op('ScatterElements', [b.op('Mul', [allInBlocks, zeroDouble]), headBlock, headW], { axis: 1, reduction: 'add' });
  const blockW = b.op('Sub', [allInBlocks, headInBlocks]); // [S, nb]: the tail's weight in each block
  const headTotal = b.op('ReduceSum', [headW, shape(1)], { keepdims: 1 }); // [S, 1]
  const tailTotal = b.op('ReduceSum', [blockW, shape(1)], { keepdims: 1 }); // [S, 1]

  // Each uniform's point in the tail: floor(u·W) less the head's weight.
  const x = b.op('Sub', [b.op('Floor', [b.op('Mul', [drawU, b.op('Add', [headTotal, tailTotal])])]), headTotal]); // [S, R]
  const x3 = unsq(x, 2); // [S, R, 1]
  const countAtMost = (cum: string) => b.op('ReduceSum', [b.op('Cast', [b.op('LessOrEqual', [cum, x3])], { to: DType.INT64 }), shape(2)], { keepdims: 0 });
  const blockEnd = b.op('CumSum', [blockW, b.constInt64([1])]); // [S, nb]
  const block = b.op('Min', [countAtMost(unsq(blockEnd, 1)), b.constInt64([nb - 1])]); // [S, R]
  const blockStart = b.op('Sub', [b.op('GatherElements', [blockEnd, block], { axis: 1 }), b.op('GatherElements', [blockW, block], { axis: 1 })]); // [S, R]
  // The chosen block's weights with the head's tokens zeroed (head tokens of other blocks go to a spare last column).
  const values = b.op('Concat', [b.op('GatherND', [blocks3, unsq(block, 2)], { batch_dims: 1 }), b.op('Mul', [unsq(blockStart, 2), zeroDouble])], { axis: 2 }); // [S, R, BLOCK + 1]
  const column = b.op('Where', [b.op('Equal', [unsq(headBlock, 1), unsq(block, 2)]), unsq(b.op('Mod', [headIds, b.constInt64([BLOCK])]), 1), b.constInt64([BLOCK])]); // [S, R, H]
  const cleared = b.op('ScatterElements', [values, column, b.op('Mul', [b.op('Cast', [column], { to: DType.DOUBLE }), zeroDouble])], { axis: 2 });
  const tailValues = b.op('Slice', [cleared, shape(0), shape(BLOCK), shape(2)]); // [S, R, BLOCK]
  const within = b.op('Add', [b.op('CumSum', [tailValues, b.constInt64([2])]), unsq(blockStart, 2)]); // [S, R, BLOCK]
  const index = unsq(b.op('Min', [countAtMost(within), b.constInt64([BLOCK - 1])]), 2); // [S, R, 1]
  const wt = b.op('GatherElements', [tailValues, index], { axis: 2 }); // [S, R, 1]
  const before = b.op('Sub', [b.op('GatherElements', [within, index], { axis: 2 }), wt]);
  const token = b.op('Min', [b.op('Add', [b.op('Mul', [block, b.constInt64([BLOCK])]), b.op('Squeeze', [index, shape(2)])]), b.constInt64([vocab - 1])]); // [S, R]

  // Probability ranked above the drawn token: likelier, or as likely with a lower id.
  const p3 = unsq(p, 1); // [S, 1, V]
  const pt3 = unsq(b.op('GatherElements', [p, token], { axis: 1 }), 2); // [S, R, 1]
  const ids = b.int64s('sampling_token_ids', Array.from({ length: vocab }, (_, i) => i));
  const ranked = b.op('Or', [b.op('Greater', [p3, pt3]), b.op('And', [b.op('Equal', [p3, pt3]), b.op('Less', [ids, unsq(token, 2)])])]); // [S, R, V]
  let aboveP = b.op('Mul', [p3, b.op('Cast', [ranked], { to: DType.FLOAT })]);
  if (nb * BLOCK !== vocab) aboveP = b.op('Pad', [aboveP, shape(0, 0, 0, 0, 0, nb * BLOCK - vocab), b.constFloat(0)]);
  const aboveBlocks = b.op('ReduceSum', [b.op('Reshape', [aboveP, shape(0, 0, nb, BLOCK)]), shape(3)], { keepdims: 0 }); // [S, R, nb] f32
  const above = b.op('ReduceSum', [toDouble(aboveBlocks), shape(2)], { keepdims: 0 }); // [S, R]
  const draws = b.op('Concat', [tailTotal, b.op('Squeeze', [before, shape(2)]), b.op('Squeeze', [wt, shape(2)]), above], { axis: 1 });
  return [b.op('Gather', [p, fullRows], { axis: 0 }), headIds, headP, token, draws];
}
