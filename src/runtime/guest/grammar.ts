/** pie:inferlet/grammar: a guest's matcher is a handle; the matcher lives beside the engine. */
import type { GrammarSource } from '../../engine/grammar/source.ts';
import type { GuestEnv } from './env.ts';
import type { GuestModel } from './model.ts';

export interface GuestMatcher {
  readonly handle: number;
}

export function guestGrammar(env: GuestEnv) {
  class Matcher implements GuestMatcher {
    readonly handle: number;
    private dropped = false;
    private constructor(handle: number) {
      this.handle = handle;
    }
    private static async create(model: GuestModel, source: GrammarSource) {
      const h = env.handle();
      await env.call('grammar.create', [h, model.name, source]);
      return new Matcher(h);
    }
    static fromJsonSchema(model: GuestModel, schema: string) {
      return Matcher.create(model, { type: 'json_schema', schema });
    }
    static fromJsonObject(model: GuestModel) {
      return Matcher.create(model, { type: 'json_object' });
    }
    static fromRegex(model: GuestModel, pattern: string) {
      return Matcher.create(model, { type: 'regex', pattern });
    }
    static fromEbnf(model: GuestModel, grammar: string, root: string) {
      return Matcher.create(model, { type: 'ebnf', grammar, root });
    }
    static fromChoice(model: GuestModel, choices: string[]) {
      return Matcher.create(model, { type: 'choice', choices });
    }
    static fromStructuralTag(model: GuestModel, tag: string) {
      return Matcher.create(model, { type: 'structural_tag', tag });
    }
    allowed() {
      return env.call('grammar.allowed', [this.handle]);
    }
    accept(token: number) {
      return env.call('grammar.accept', [this.handle, token]);
    }
    async rollback(tokens: number) {
      await env.call('grammar.rollback', [this.handle, tokens]);
    }
    isTerminated() {
      return env.call('grammar.is-terminated', [this.handle]);
    }
    reset() {
      env.send('grammar.reset', [this.handle]);
    }
    async fork() {
      const h = env.handle();
      await env.call('grammar.fork', [this.handle, h]);
      return new Matcher(h);
    }
    [Symbol.dispose]() {
      if (this.dropped) return;
      this.dropped = true;
      env.send('grammar.drop', [this.handle]);
    }
  }
  return { Matcher };
}
