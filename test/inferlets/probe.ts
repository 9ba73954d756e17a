/**
 * A test inferlet with one behaviour per `action`, so the runtime's tests
 * build a single component.
 */
import { Context, emit, Grammar, inferlet, input, isCancelled, log, Model, PieError, queue, rangesToRuns, Sampler, topic } from '@pie/inferlet';

interface Input {
  action: string;
  prompt?: number[];
  max_tokens?: number;
  name?: string;
  mb?: number;
  count?: number;
  message?: string;
  stop_token_ids?: number[];
  ignore_eos?: boolean;
}

function attempt(fn: () => unknown): unknown {
  try {
    return { ok: fn() };
  } catch (err) {
    return err instanceof PieError ? { code: err.code, message: err.message } : { error: String(err) };
  }
}

/** The first token in a set of runs [in, out, in, ...]. */
function firstOf(runs: Uint32Array): number {
  return runs[0]! > 0 ? 0 : runs[1]!;
}

/** Module state: survives between invocations only on a reused instance. */
let runs = 0;

export const run = inferlet<Input>((args) => {
  runs++;
  const model = Model.load();
  const prompt = args.prompt ?? [1, 2, 3, 4, 5];
  switch (args.action) {
    case 'echo':
      return { input: input(), models: [model.name] };
    case 'runs':
      return { runs, instanceId: args.name };
    case 'info':
      return { info: model.info, special: [...model.specialTokens()], bos: model.tokenId('<s>') ?? null, roundTrip: model.decode(model.encode('hello there')) };
    case 'generate': {
      const ctx = model.newContext().fill(prompt);
      const stops = { ...(args.stop_token_ids ? { stop_token_ids: args.stop_token_ids } : {}), ...(args.ignore_eos ? { ignore_eos: true } : {}) };
      return ctx.generate({ sampling: Sampler.greedy(), max_tokens: args.max_tokens ?? 8, stream: true, ...stops }).result();
    }
    case 'generate-pull': {
      const ctx = model.newContext().fill(prompt);
      const texts = [...ctx.generate({ sampling: Sampler.greedy(), max_tokens: args.max_tokens ?? 8 })].map((c) => c.tokens);
      return { chunks: texts };
    }
    case 'hold': {
      // Streams a long generation; the test cancels it midway.
      const ctx = model.newContext().fill(prompt);
      ctx.fork().fill([7]);
      return ctx.generate({ sampling: Sampler.greedy(), max_tokens: args.max_tokens ?? 10_000, stream: true }).result();
    }
    case 'spin':
      for (;;);
    case 'encode': {
      // Tokenizes the given text `count` times: host-side work, never a stall.
      let n = 0;
      for (let i = 0; i < (args.count ?? 1); i++) n += model.encode(args.message!).length;
      return { chars: args.message!.length, tokens: n };
    }
    case 'encode-huge':
      return attempt(() => model.encode('x'.repeat((args.mb ?? 3) << 20)));
    case 'wide-forward': {
      // Asks for an output at the first of `count` pending tokens: every row from there comes back.
      const ctx = model.newContext().fill(Array.from({ length: args.count ?? 8 }, (_, i) => 3 + (i % 200)));
      return attempt(() => ctx.forward([{ row: 0, distribution: 1 }]).length);
    }
    case 'contexts': {
      // Makes contexts and never releases them.
      const held: Context[] = [];
      for (let i = 0; i < (args.count ?? 1); i++) held.push(model.newContext());
      return { made: held.length };
    }
    case 'spin-until-cancelled':
      // Calls the host in a loop (so its worker keeps beating) and ignores being cancelled.
      for (;;) isCancelled();
    case 'throw': {
      model.newContext().fill(prompt).generate({ max_tokens: 2 }).result(); // holds pages when it throws
      throw new Error(args.message ?? 'boom');
    }
    case 'memory': {
      const keep: Uint8Array[] = [];
      for (let i = 0; i < (args.mb ?? 64); i++) keep.push(new Uint8Array(1 << 20).fill(i));
      log('allocated'); // the host checks memory at every call
      return { kept: keep.length };
    }
    case 'errors':
      return {
        badModel: attempt(() => Model.load('no-such-model')),
        badToken: attempt(() => model.newContext().fill([model.info.vocabSize + 5])),
        noSnapshot: attempt(() => Context.open(model, 'never-saved')),
        badSampling: attempt(() => model.newContext().fill(prompt).generate({ sampling: { temperature: -1 } }).result()), // a generation that cannot start says why at its result
        badSamplingIterated: attempt(() => [...model.newContext().fill(prompt).generate({ sampling: { temperature: -1 } })]),
        // More refused generations than the host keeps unreported: each is forgotten once its result has said why.
        refusedMany: (() => {
          const ctx = model.newContext().fill(prompt);
          let refused = 0;
          for (let i = 0; i < 4200; i++) if ((attempt(() => ctx.generate({ sampling: { temperature: -1 } }).result()) as { code?: string }).code === 'invalid-argument') refused++;
          return refused;
        })(),
        ...(() => {
          // A fill the guest side sees cannot fit goes to the host as a call, for the exact error.
          const ctx = model.newContext().fill([1, 2, 3]);
          return { tooLong: attempt(() => ctx.fill(new Array<number>(model.info.contextLength).fill(1))), afterTooLong: ctx.tokens().length };
        })(),
      };
    case 'grammar': {
      const refused = attempt(() => Grammar.regex('((').matcher(model));
      const m = Grammar.choice(['abc', 'abd']).matcher(model);
      const eos = model.info.eosTokenIds[0]!;
      const early = m.accept(eos); // not where the grammar may end
      const first = firstOf(m.allowed());
      m.accept(first);
      const fork = m.fork();
      const sameAllowed = Array.from(fork.allowed()).join() === Array.from(m.allowed()).join();
      const second = firstOf(m.allowed());
      m.accept(second);
      m.rollback(1);
      const backAllowed = firstOf(m.allowed()) === second;
      const badRollback = attempt(() => m.rollback(99));
      // A generation continues from the matcher's state and advances it to the end.
      const ctx = model.newContext().fill(prompt);
      const busy = (() => {
        const g = ctx.fork().generate({ grammar: m, sampling: Sampler.greedy(), max_tokens: 10 });
        const again = attempt(() => ctx.fork().generate({ grammar: m, max_tokens: 10 }).result());
        return { again, done: g.result() };
      })();
      const prefix = model.decode([first]);
      fork.reset();
      return { refused, early, sameAllowed, backAllowed, badRollback, text: prefix + busy.done.text, finish: busy.done.finish_reason, terminated: m.isTerminated, forkTerminated: fork.isTerminated, busy: busy.again };
    }
    case 'tree': {
      // Two siblings after the prompt, at the same position, each blind to the other.
      const n = prompt.length;
      const tree = model.newContext().fill(prompt);
      tree.prefill(); // the attention rows below are for the two new tokens only
      const [d, e] = tree.forward([{ row: 0, distribution: 3 }, { row: 1, distribution: 3 }], {
        tokens: [66, 77],
        positions: [n, n],
        attention: [rangesToRuns([[0, n + 1]]), rangesToRuns([[0, n], [n + 1, n + 2]])],
      });
      const alone = (t: number) => model.newContext().fill(prompt).fill([t]).distribution(3);
      return { tree: [d, e].map((r) => (r!.kind === 'distribution' ? r!.tokens : null)), alone: [alone(66), alone(77)] };
    }
    case 'bad-forward': {
      const ctx = model.newContext().fill([1, 2, 3]);
      const refused = attempt(() => ctx.sample({ temperature: -1 }, { tokens: [4, 5] }));
      const badRow = attempt(() => ctx.forward([{ row: 7, entropy: true }], { tokens: [4] }));
      return { refused, badRow, length: ctx.length };
    }
    case 'limit-tokens': {
      const ctx = model.newContext().fill(prompt);
      const first = ctx.generate({ sampling: Sampler.greedy(), max_tokens: args.max_tokens ?? 100 }).result();
      return { first: first.tokens.length, second: attempt(() => ctx.generate({ max_tokens: 5 }).result()) };
    }
    case 'limit-pages':
      return attempt(() => model.newContext().fill(prompt).generate({ sampling: Sampler.greedy(), max_tokens: args.max_tokens ?? 1000 }).result());
    case 'save':
      model.newContext().fill(prompt).save(args.name!);
      return { saved: args.name };
    case 'open': {
      const ctx = Context.open(model, args.name!);
      return { length: ctx.length, tokens: ctx.tokens() };
    }
    case 'push':
      for (let i = 0; i < (args.count ?? 1); i++) queue(args.name!).push(args.message!);
      return null;
    case 'flood': {
      // Pushes messages of `count` characters (to queue `name`, or to a new queue each with `mb` set) until refused.
      const message = 'x'.repeat(args.count ?? 1);
      for (let i = 0; i < 100_000; i++) {
        try {
          queue(args.mb ? `${args.name}-${i}` : args.name!).push(message);
        } catch (err) {
          return { pushed: i, error: err instanceof PieError ? { code: err.code, message: err.message } : String(err) };
        }
      }
      return { pushed: 100_000 };
    }
    case 'pull':
      return { got: queue(args.name!).pull({ timeout_ms: 5000 }) ?? null };
    case 'subscribe': {
      const sub = topic(args.name!).subscribe();
      emit('subscribed', '');
      const got: string[] = [];
      for (let i = 0; i < (args.count ?? 1); i++) got.push(sub.next({ timeout_ms: 5000 }) ?? 'timeout');
      return { got };
    }
    case 'broadcast':
      topic(args.name!).broadcast(args.message!);
      return null;
    default:
      throw new Error(`unknown action ${args.action}`);
  }
});
