/** ABI records to engine values: sampling parameters, run-length sets, step outputs. */
import { logSumExp, Sampler, topK, TokenHistory, type SamplingParams, type TokenMask } from '../../../engine/index.ts';
import { AbiError } from '../../abi.ts';
import type { WitOutput, WitOutputRequest, WitSampling } from '../../ops.ts';

function check(ok: boolean, what: string): void {
  if (!ok) throw new AbiError('invalid-argument', what);
}

export function toSamplingParams(s: WitSampling, vocabSize: number, logprobs?: number): SamplingParams {
  check(Number.isFinite(s.temperature) && s.temperature >= 0, `temperature must be >= 0, got ${s.temperature}`);
  check(s.topP > 0 && s.topP <= 1, `top-p must be in (0, 1], got ${s.topP}`);
  check(s.minP >= 0 && s.minP <= 1, `min-p must be in [0, 1], got ${s.minP}`);
  check(Number.isFinite(s.presencePenalty) && Math.abs(s.presencePenalty) <= 2, `presence-penalty must be in [-2, 2], got ${s.presencePenalty}`);
  check(Number.isFinite(s.frequencyPenalty) && Math.abs(s.frequencyPenalty) <= 2, `frequency-penalty must be in [-2, 2], got ${s.frequencyPenalty}`);
  check(s.repetitionPenalty === 0 || (Number.isFinite(s.repetitionPenalty) && s.repetitionPenalty > 0), `repetition-penalty must be > 0, got ${s.repetitionPenalty}`);
  const bias = new Map<number, number>();
  for (const [t, v] of s.logitBias) {
    check(t < vocabSize, `logit-bias token ${t} is outside the vocabulary [0, ${vocabSize})`);
    check(Number.isFinite(v), `logit-bias for token ${t} is not a number`);
    bias.set(t, v);
  }
  return {
    temperature: s.temperature,
    ...(s.topP < 1 ? { topP: s.topP } : {}),
    ...(s.topK > 0 ? { topK: s.topK } : {}),
    ...(s.minP > 0 ? { minP: s.minP } : {}),
    ...(s.presencePenalty ? { presencePenalty: s.presencePenalty } : {}),
    ...(s.frequencyPenalty ? { frequencyPenalty: s.frequencyPenalty } : {}),
    ...(s.repetitionPenalty && s.repetitionPenalty !== 1 ? { repetitionPenalty: s.repetitionPenalty } : {}),
    ...(bias.size > 0 ? { logitBias: bias } : {}),
    ...(s.seed != null ? { seed: s.seed } : {}),
    ...(logprobs !== undefined ? { logprobs } : {}),
  };
}

/** Runs [in, out, in, ...] as a membership array over [0, size). */
export function runsToFlags(runs: ArrayLike<number>, size: number): Uint8Array {
  const flags = new Uint8Array(size);
  let at = 0;
  for (let i = 0; i < runs.length && at < size; i++) {
    const end = Math.min(size, at + runs[i]!);
    if (i % 2 === 0) flags.fill(1, at, end);
    at = end;
  }
  return flags;
}

/** Runs over the vocabulary as the engine's token bitset. */
export function runsToMask(runs: ArrayLike<number>, vocabSize: number): TokenMask {
  const mask = new Uint32Array(Math.ceil(vocabSize / 32));
  let at = 0;
  for (let i = 0; i < runs.length && at < vocabSize; i++) {
    const end = Math.min(vocabSize, at + runs[i]!);
    if (i % 2 === 0) for (let t = at; t < end; t++) mask[t >>> 5]! |= 1 << (t & 31);
    at = end;
  }
  return mask;
}

const MAX_TOP = 1024;

/** Checks one output request and returns how to compute it from its row's logits (nothing runs before every request is valid). */
export function prepareOutput(req: WitOutputRequest, vocabSize: number): (logits: Float32Array, history: () => TokenHistory) => WitOutput {
  const mask = req.logitMask ? runsToMask(req.logitMask, vocabSize) : undefined;
  switch (req.kind.tag) {
    case 'sample': {
      check(req.topLogprobs <= 20, `top-logprobs must be at most 20, got ${req.topLogprobs}`);
      const params = toSamplingParams(req.kind.val, vocabSize, req.topLogprobs);
      return (logits, history) => {
        const sampler = new Sampler(params);
        const s = sampler.sample(logits, sampler.usesHistory ? history() : undefined, mask);
        return { tag: 'token', val: { token: s.token, logprob: s.logprob ?? 0, top: s.top ?? [] } };
      };
    }
    case 'distribution': {
      const k = req.kind.val;
      check(k >= 1 && k <= MAX_TOP, `a distribution has 1 to ${MAX_TOP} tokens, got ${k}`);
      return (logits) => {
        const x = mask ? masked(logits, mask) : logits;
        const lse = logSumExp(x);
        return { tag: 'distribution', val: topK(x, k).filter((t) => x[t] !== -Infinity).map((t) => ({ token: t, logprob: x[t]! - lse })) };
      };
    }
    case 'entropy':
      return (logits) => {
        const lse = logSumExp(logits);
        let h = 0;
        for (let i = 0; i < logits.length; i++) {
          const lp = logits[i]! - lse;
          if (lp > -Infinity) h -= Math.exp(lp) * lp;
        }
        return { tag: 'entropy', val: h };
      };
    default:
      throw new AbiError('invalid-argument', 'unknown output kind');
  }
}

function masked(x: Float32Array, mask: TokenMask): Float32Array {
  const y = new Float32Array(x.length).fill(-Infinity);
  for (let t = 0; t < x.length; t++) if (mask[t >>> 5]! & (1 << (t & 31))) y[t] = x[t]!;
  return y;
}
