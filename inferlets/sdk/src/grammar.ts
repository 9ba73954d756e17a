/** Grammars that constrain what a model writes: JSON schemas, regexes, EBNF, choices, structural tags. */
import * as abi from 'pie:inferlet/grammar@0.2.0';
import { call } from './errors.ts';
import type { Model } from './model.ts';

type Source =
  | { type: 'json_schema'; schema: string }
  | { type: 'json_object' }
  | { type: 'regex'; pattern: string }
  | { type: 'ebnf'; grammar: string; root: string }
  | { type: 'choice'; choices: string[] }
  | { type: 'structural_tag'; tag: string };

/**
 * What the output must look like. A grammar is only a description: the
 * server compiles it (once per source; cached) when a generation or a
 * matcher first uses it, and refuses one it cannot honour with a
 * `PieError` whose code is `invalid-argument`. JSON output is compact:
 * one line, `", "` and `": "` between items.
 *
 * @example
 * const person = ctx.generate({ grammar: Grammar.json({ type: 'object', properties: { name: { type: 'string' } }, required: ['name'] }), max_tokens: 64 }).json();
 * const answer = ctx.generate({ grammar: Grammar.choice(['yes', 'no']) }).text();
 */
export class Grammar {
  /** @internal */
  readonly source: Source;

  private constructor(source: Source) {
    this.source = source;
  }

  /** JSON valid against a JSON Schema (an object, or its JSON text). */
  static json(schema: object | boolean | string): Grammar {
    return new Grammar({ type: 'json_schema', schema: typeof schema === 'string' ? schema : JSON.stringify(schema) });
  }

  /** Any JSON object. */
  static jsonObject(): Grammar {
    return new Grammar({ type: 'json_object' });
  }

  /** Text matching a regular expression as a whole. */
  static regex(pattern: string): Grammar {
    return new Grammar({ type: 'regex', pattern });
  }

  /** An EBNF grammar (W3C-style: `root ::= "a" b*`) starting at `root`. */
  static ebnf(grammar: string, root = 'root'): Grammar {
    return new Grammar({ type: 'ebnf', grammar, root });
  }

  /** Exactly one of these strings. */
  static choice(choices: string[]): Grammar {
    return new Grammar({ type: 'choice', choices: [...choices] });
  }

  /**
   * An xgrammar structural tag: free text with constrained tagged regions (the
   * `format` of a `{type: "structural_tag"}`, or the whole object). JSON schemas
   * in it give compact JSON, as `Grammar.json` does.
   *
   * @example
   * // Free text, and any number of calls, each valid against its schema, once the tag starts.
   * Grammar.structuralTag({ type: 'triggered_tags', triggers: ['<call>'], tags: [{ type: 'tag', begin: '<call>', content: { type: 'json_schema', json_schema: schema }, end: '</call>' }] });
   */
  static structuralTag(format: object): Grammar {
    const tag = 'format' in format ? format : { type: 'structural_tag', format };
    return new Grammar({ type: 'structural_tag', tag: JSON.stringify(tag) });
  }

  /**
   * A matcher at the start of this grammar, for step-level decoding.
   *
   * @example
   * const m = Grammar.regex('[0-9]+').matcher(model);
   * const { token } = ctx.sample(Sampler.greedy(), { mask: m.allowed() });
   * m.accept(token);
   */
  matcher(model: Model): Matcher {
    return Matcher.wrap(call(() => this.open(model)));
  }

  /** @internal */
  open(model: Model): abi.Matcher {
    const s = this.source;
    switch (s.type) {
      case 'json_schema':
        return abi.Matcher.fromJsonSchema(model.raw, s.schema);
      case 'json_object':
        return abi.Matcher.fromJsonObject(model.raw);
      case 'regex':
        return abi.Matcher.fromRegex(model.raw, s.pattern);
      case 'ebnf':
        return abi.Matcher.fromEbnf(model.raw, s.grammar, s.root);
      case 'choice':
        return abi.Matcher.fromChoice(model.raw, s.choices);
      case 'structural_tag':
        return abi.Matcher.fromStructuralTag(model.raw, s.tag);
    }
  }
}

/**
 * Where a generation stands in a grammar. `allowed()` is the set of tokens
 * it allows next, as runs (pass it as a step's `mask`); `accept` advances it.
 * Pass a matcher to `generate({ grammar })` to continue from its state; the
 * generation advances it.
 */
export class Matcher {
  /** @internal */
  readonly raw: abi.Matcher;

  private constructor(raw: abi.Matcher) {
    this.raw = raw;
  }

  /** @internal */
  static wrap(raw: abi.Matcher): Matcher {
    return new Matcher(raw);
  }

  /** Tokens allowed next, as runs (the end-of-sequence tokens only where the grammar may end). */
  allowed(): Uint32Array {
    return this.raw.allowed();
  }

  /** Advances over a token; false (and no change) if the grammar does not allow it. */
  accept(token: number): boolean {
    return this.raw.accept(token);
  }

  /** Undoes the last `tokens` accepted tokens. */
  rollback(tokens: number): void {
    call(() => this.raw.rollback(tokens));
  }

  /** Whether the grammar is complete and an end-of-sequence token was accepted. */
  get isTerminated(): boolean {
    return this.raw.isTerminated();
  }

  reset(): void {
    this.raw.reset();
  }

  /** A new matcher in the same state (for a forked context). */
  fork(): Matcher {
    return new Matcher(this.raw.fork());
  }

  /** Frees it now (otherwise at the end of the invocation). */
  release(): void {
    this.raw[Symbol.dispose]();
  }
}
