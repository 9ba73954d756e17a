/**
 * Tree-of-thought style search: every node branches into several sampled
 * "thoughts" (short continuations, generated in parallel on forks of the
 * node), each is scored by the model's own confidence, and only the best
 * `keep` survive to the next level; pruned branches free their pages at once.
 *
 *   pie run tree-of-thought.wasm -- '{"prompt": "Once upon a time", "depth": 2, "branches": 3, "keep": 2}'
 */
import { Context, inferlet, Model } from '@pie/inferlet';

interface Input {
  prompt: string;
  depth?: number;
  branches?: number;
  keep?: number;
  step_tokens?: number;
  seed?: number;
}

interface Node {
  ctx: Context;
  thoughts: string[];
  score: number;
}

export const run = inferlet<Input>((input) => {
  const root = Model.load().newContext().fill(input.prompt);
  root.prefill();
  let frontier: Node[] = [{ ctx: root, thoughts: [], score: 0 }];
  let seed = input.seed ?? 11;
  let expanded = 0;
  let pruned = 0;
  for (let level = 0; level < (input.depth ?? 2); level++) {
    const started = frontier.flatMap((node) =>
      Array.from({ length: input.branches ?? 3 }, () => {
        const ctx = node.ctx.fork();
        const gen = ctx.generate({ sampling: { temperature: 0.9, seed: seed++ }, max_tokens: input.step_tokens ?? 8, logprobs: 0 });
        return { node, ctx, gen };
      }),
    );
    const children: Node[] = started.map(({ node, ctx, gen }) => {
      const r = gen.result();
      const mean = r.logprobs.reduce((s, l) => s + l.logprob, 0) / Math.max(1, r.logprobs.length);
      return { ctx, thoughts: [...node.thoughts, r.text], score: node.score + mean };
    });
    expanded += children.length;
    for (const node of frontier) node.ctx.release(); // the children hold the shared pages they need
    children.sort((a, b) => b.score - a.score);
    frontier = children.slice(0, input.keep ?? 2);
    for (const child of children.slice(input.keep ?? 2)) child.ctx.release();
    pruned += Math.max(0, children.length - frontier.length);
  }
  const best = frontier[0]!;
  return { text: best.thoughts.join(''), thoughts: best.thoughts, score: best.score, expanded, pruned };
});
