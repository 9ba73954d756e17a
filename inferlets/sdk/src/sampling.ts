/** Sampling parameters, named as in the OpenAI API, and presets. */
import type { Sampling } from 'pie:inferlet/types@0.2.0';

export interface SamplingOptions {
  /** 0 is greedy (default 1). */
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  repetition_penalty?: number;
  /** Added to the logits of the given token ids. */
  logit_bias?: Record<number, number>;
  /** Makes sampling repeatable. */
  seed?: number;
}

/**
 * Ready-made sampling settings.
 *
 * @example
 * ctx.generate({ sampling: Sampler.greedy(), max_tokens: 32 });
 * ctx.generate({ sampling: Sampler.topP(0.9, 0.7), max_tokens: 32 });
 */
export const Sampler = {
  greedy: (): SamplingOptions => ({ temperature: 0 }),
  /** Plain sampling at a temperature. */
  temperature: (temperature: number, seed?: number): SamplingOptions => ({ temperature, ...(seed !== undefined ? { seed } : {}) }),
  /** Nucleus sampling. */
  topP: (top_p: number, temperature = 1, seed?: number): SamplingOptions => ({ temperature, top_p, ...(seed !== undefined ? { seed } : {}) }),
  topK: (top_k: number, temperature = 1, seed?: number): SamplingOptions => ({ temperature, top_k, ...(seed !== undefined ? { seed } : {}) }),
  minP: (min_p: number, temperature = 1, seed?: number): SamplingOptions => ({ temperature, min_p, ...(seed !== undefined ? { seed } : {}) }),
} as const;

/** The ABI's record, every field filled. */
export function toSampling(s: SamplingOptions = {}): Sampling {
  return {
    temperature: s.temperature ?? 1,
    topP: s.top_p ?? 1,
    topK: s.top_k ?? 0,
    minP: s.min_p ?? 0,
    presencePenalty: s.presence_penalty ?? 0,
    frequencyPenalty: s.frequency_penalty ?? 0,
    repetitionPenalty: s.repetition_penalty ?? 1,
    logitBias: Object.entries(s.logit_bias ?? {}).map(([t, v]) => [Number(t), v] as [number, number]),
    seed: s.seed === undefined ? undefined : s.seed >>> 0,
  };
}
