/** pie:inferlet/inference: the step-level forward pass and host-run generations, from the guest's side. */
import type { WitForwardArgs, WitGenerateArgs } from '../ops.ts';
import type { GuestContext } from './context.ts';
import type { GuestEnv } from './env.ts';
import type { GuestMatcher } from './grammar.ts';

export function guestInference(env: GuestEnv) {
  class Generation {
    readonly handle: number;
    /** Chunks fetched from the host, handed out one per `next`. */
    private readonly buffered: unknown[] = [];
    private ended = false;
    constructor(handle: number) {
      this.handle = handle;
    }
    async next() {
      if (this.buffered.length === 0 && !this.ended) {
        const chunks = (await env.call('generation.next', [this.handle])) as unknown[] | null;
        if (chunks === null) this.ended = true;
        else this.buffered.push(...chunks);
      }
      return this.buffered.shift();
    }
    finish() {
      return env.call('generation.finish', [this.handle]);
    }
    cancel() {
      env.send('generation.cancel', [this.handle]);
    }
    [Symbol.dispose]() {
      env.send('generation.drop', [this.handle]);
    }
  }
  return {
    Generation,
    forward: (ctx: GuestContext, args: WitForwardArgs) => {
      ctx.known = undefined; // the host appends the tokens
      return env.call('inference.forward', [ctx.handle, args]);
    },
    promptLogprobs: (ctx: GuestContext, top: number) => env.call('inference.prompt-logprobs', [ctx.handle, top]),
    /** Returns at once: a generation that could not start says why at its first next or finish. */
    generate: (ctx: GuestContext, args: WitGenerateArgs, constraint: GuestMatcher | undefined) => {
      ctx.known = undefined; // the host appends what it generates
      const h = env.handle();
      env.send('inference.generate', [ctx.handle, h, args, constraint?.handle ?? null]);
      return new Generation(h);
    },
  };
}
