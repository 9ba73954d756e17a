/**
 * pie:inferlet/grammar. A guest's matcher is a handle; the matcher itself
 * lives beside the engine, which advances it during host-run generations.
 * Compiled grammars are cached by source in the engine's `Grammars`.
 */
import type { Engine, GrammarSource, Matcher, TokenMask } from '../../../engine/index.ts';
import { GrammarError } from '../../../engine/index.ts';
import { AbiError } from '../../abi.ts';
import type { HeldGeneration, Invocation } from '../invocation.ts';
import type { Handlers, OpsIn } from './host-side.ts';

/** Matchers one invocation may hold at once. */
export const MAX_MATCHERS = 1024;

export interface HeldMatcher {
  engine: Engine;
  matcher: Matcher;
}

/** The matcher behind a guest handle. */
export function heldMatcher(inv: Invocation, handle: number): HeldMatcher {
  const held = inv.matchers.get(handle);
  if (!held) throw new AbiError('invalid-argument', `matcher ${handle} has been released`);
  return held;
}

/** The running generation a matcher constrains, if any (one at a time). */
export function generationUsing(inv: Invocation, matcher: Matcher): HeldGeneration | undefined {
  return [...inv.generations.values()].find((g) => g.matcher === matcher && !g.gen.finished);
}

/** A bitset over the vocabulary as runs [in, out, in, ...] starting with an included run. */
export function maskToRuns(mask: TokenMask, vocabSize: number): Uint32Array {
  const runs: number[] = [];
  let inSet = true;
  let start = 0;
  for (let t = 0; t < vocabSize; t++) {
    const bit = ((mask[t >>> 5]! >>> (t & 31)) & 1) === 1;
    if (bit !== inSet) {
      runs.push(t - start);
      start = t;
      inSet = bit;
    }
  }
  if (inSet) runs.push(vocabSize - start);
  return Uint32Array.from(runs);
}

function checkSource(source: unknown): GrammarSource {
  const s = source as GrammarSource;
  const ok =
    (s?.type === 'json_schema' && typeof s.schema === 'string') ||
    s?.type === 'json_object' ||
    (s?.type === 'regex' && typeof s.pattern === 'string') ||
    (s?.type === 'ebnf' && typeof s.grammar === 'string' && typeof (s.root ?? '') === 'string') ||
    (s?.type === 'choice' && Array.isArray(s.choices) && s.choices.every((c) => typeof c === 'string')) ||
    (s?.type === 'structural_tag' && typeof s.tag === 'string');
  if (!ok) throw new AbiError('invalid-argument', 'not a grammar source');
  return s;
}

function hold(inv: Invocation, h: number, held: HeldMatcher): void {
  if (inv.done) {
    held.matcher.dispose();
    return;
  }
  inv.matchers.set(h, held);
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RangeError) throw new AbiError('invalid-argument', err.message);
    throw err;
  }
}

export const grammarHandlers: Handlers<OpsIn<'grammar'>> = {
  'grammar.create': async (inv, [h, model, source], host) => {
    const engine = host.engine(inv, model);
    if (inv.matchers.size >= MAX_MATCHERS) throw new AbiError('limit-exceeded', `an invocation holds at most ${MAX_MATCHERS} matchers`);
    try {
      const grammar = await engine.grammars.compile(checkSource(source));
      hold(inv, h, { engine, matcher: await engine.grammars.matcher(grammar) });
    } catch (err) {
      if (err instanceof GrammarError) throw new AbiError('invalid-argument', err.message);
      throw err;
    }
  },
  'grammar.allowed': async (inv, [h]) => {
    const { engine, matcher } = heldMatcher(inv, h);
    return maskToRuns(await matcher.mask(), engine.model.config.vocabSize);
  },
  'grammar.accept': (inv, [h, token]) => heldMatcher(inv, h).matcher.accept(token),
  'grammar.rollback': (inv, [h, n]) => guard(() => heldMatcher(inv, h).matcher.rollback(n)),
  'grammar.is-terminated': (inv, [h]) => heldMatcher(inv, h).matcher.isTerminated,
  'grammar.reset': (inv, [h]) => inv.matchers.get(h)?.matcher.reset(),
  'grammar.fork': async (inv, [h, child]) => {
    const { engine, matcher } = heldMatcher(inv, h);
    if (inv.matchers.size >= MAX_MATCHERS) throw new AbiError('limit-exceeded', `an invocation holds at most ${MAX_MATCHERS} matchers`);
    hold(inv, child, { engine, matcher: await matcher.fork() });
  },
  'grammar.drop': (inv, [h]) => {
    const held = inv.matchers.get(h);
    if (!held) return;
    inv.matchers.delete(h);
    // A generation it constrains keeps it until it ends.
    const user = generationUsing(inv, held.matcher);
    if (user) void user.gen.result.then(() => held.matcher.dispose());
    else held.matcher.dispose();
  },
};
