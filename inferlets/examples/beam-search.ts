/**
 * Beam search on the step-level forward pass: every step asks each beam for
 * its top-k next tokens, keeps the best `width` continuations by total
 * log-probability, forks the surviving beams and frees the rest.
 *
 *   pie run beam-search.wasm -- '{"prompt": "Once upon a time", "width": 3, "max_tokens": 16}'
 */
import { Context, inferlet, Model } from '@pie/inferlet';

interface Input {
  prompt: string;
  width?: number;
  max_tokens?: number;
}

interface Beam {
  ctx: Context;
  tokens: number[];
  score: number;
  done: boolean;
}

export const run = inferlet<Input>((input) => {
  const model = Model.load();
  const width = input.width ?? 3;
  const eos = new Set(model.info.eosTokenIds);
  let beams: Beam[] = [{ ctx: model.newContext().fill(input.prompt), tokens: [], score: 0, done: false }];
  for (let step = 0; step < (input.max_tokens ?? 16) && beams.some((b) => !b.done); step++) {
    const candidates: { parent: Beam; token: number; score: number }[] = [];
    for (const beam of beams) {
      if (beam.done) {
        candidates.push({ parent: beam, token: -1, score: beam.score });
        continue;
      }
      for (const t of beam.ctx.distribution(width)) candidates.push({ parent: beam, token: t.token, score: beam.score + t.logprob });
    }
    candidates.sort((a, b) => b.score - a.score);
    const kept = candidates.slice(0, width);
    const next: Beam[] = kept.map((c) => {
      if (c.token < 0) return c.parent;
      const ctx = c.parent.ctx.fork().fill([c.token]);
      return { ctx, tokens: [...c.parent.tokens, c.token], score: c.score, done: eos.has(c.token) };
    });
    for (const beam of beams) if (!next.includes(beam)) beam.ctx.release();
    beams = next;
  }
  const best = beams[0]!;
  return {
    text: model.decode(best.tokens),
    tokens: best.tokens,
    score: best.score,
    beams: beams.map((b) => ({ text: model.decode(b.tokens), score: b.score })),
  };
});
