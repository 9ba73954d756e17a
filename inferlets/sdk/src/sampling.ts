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

/** What a field left out means (OpenAI's defaults): the one place they are written on the guest side. */
export const SAMPLING_DEFAULTS = {
  temperature: 1,
  top_p: 1,
  top_k: 0,
  min_p: 0,
  presence_penalty: 0,
  frequency_penalty: 0,
  repetition_penalty: 1,
} as const satisfies Required<Omit<SamplingOptions, 'logit_bias' | 'seed'>>;

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
  topP: (top_p: number, temperature: number = SAMPLING_DEFAULTS.temperature, seed?: number): SamplingOptions => ({ temperature, top_p, ...(seed !== undefined ? { seed } : {}) }),
  topK: (top_k: number, temperature: number = SAMPLING_DEFAULTS.temperature, seed?: number): SamplingOptions => ({ temperature, top_k, ...(seed !== undefined ? { seed } : {}) }),
  minP: (min_p: number, temperature: number = SAMPLING_DEFAULTS.temperature, seed?: number): SamplingOptions => ({ temperature, min_p, ...(seed !== undefined ? { seed } : {}) }),
} as const;

/** The ABI's record, every field filled. */
export function toSampling(s: SamplingOptions = {}): Sampling {
  return {
    temperature: s.temperature ?? SAMPLING_DEFAULTS.temperature,
    topP: s.top_p ?? SAMPLING_DEFAULTS.top_p,
    topK: s.top_k ?? SAMPLING_DEFAULTS.top_k,
    minP: s.min_p ?? SAMPLING_DEFAULTS.min_p,
    presencePenalty: s.presence_penalty ?? SAMPLING_DEFAULTS.presence_penalty,
    frequencyPenalty: s.frequency_penalty ?? SAMPLING_DEFAULTS.frequency_penalty,
    repetitionPenalty: s.repetition_penalty ?? SAMPLING_DEFAULTS.repetition_penalty,
    logitBias: Object.entries(s.logit_bias ?? {}).map(([t, v]) => [Number(t), v] as [number, number]),
    seed: s.seed === undefined ? undefined : s.seed >>> 0,
  };
}
