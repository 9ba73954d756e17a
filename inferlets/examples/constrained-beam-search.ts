/**
 * Beam search under a grammar, on the step-level forward pass: each beam
 * carries a matcher; its next tokens are the top-k of what the grammar
 * allows (the matcher's allowed set is the step's mask), a surviving
 * candidate forks its parent's matcher and accepts its token, and a beam is
 * done when its matcher has accepted an end token (allowed only where the
 * grammar may end). Every beam is valid by construction.
 *
 *   pie run constrained-beam-search.wasm -- '{"prompt": "Lily has a", "schema": {"type": "object", "properties": {"pet": {"enum": ["cat", "dog"]}}, "required": ["pet"]}}'
 */
import { Context, Grammar, inferlet, Matcher, Model } from '@pie/inferlet';

interface Input {
  prompt: string;
  /** A JSON Schema; or `choices`, a list of strings. */
  schema?: object;
  choices?: string[];
  width?: number;
  max_tokens?: number;
}

interface Beam {
  ctx: Context;
  matcher: Matcher;
  tokens: number[];
  score: number;
  done: boolean;
}

export const run = inferlet<Input>((input) => {
  const model = Model.load();
  const width = input.width ?? 3;
  const grammar = input.schema ? Grammar.json(input.schema) : Grammar.choice(input.choices ?? ['yes', 'no']);
  let beams: Beam[] = [{ ctx: model.newContext().fill(input.prompt), matcher: grammar.matcher(model), tokens: [], score: 0, done: false }];
  for (let step = 0; step < (input.max_tokens ?? 64) && beams.some((b) => !b.done); step++) {
    const candidates: { parent: Beam; token: number; score: number }[] = [];
    for (const beam of beams) {
      if (beam.done) {
        candidates.push({ parent: beam, token: -1, score: beam.score });
        continue;
      }
      for (const t of beam.ctx.distribution(width, { mask: beam.matcher.allowed() })) candidates.push({ parent: beam, token: t.token, score: beam.score + t.logprob });
    }
    candidates.sort((a, b) => b.score - a.score);
    const next: Beam[] = candidates.slice(0, width).map((c) => {
      if (c.token < 0) return c.parent;
      const matcher = c.parent.matcher.fork();
      if (!matcher.accept(c.token)) throw new Error(`the grammar refused token ${c.token} from its own allowed set`);
      const done = matcher.isTerminated;
      // A finished beam's end token is not part of its text and needs no computing.
      const ctx = done ? c.parent.ctx.fork() : c.parent.ctx.fork().fill([c.token]);
      return { ctx, matcher, tokens: done ? c.parent.tokens : [...c.parent.tokens, c.token], score: c.score, done };
    });
    for (const beam of beams) {
      if (next.includes(beam)) continue;
      beam.ctx.release();
      beam.matcher.release();
    }
    beams = next;
  }
  const texts = beams.map((b) => ({ text: model.decode(b.tokens), score: b.score, complete: b.done }));
  return { best: texts[0], beams: texts };
});
