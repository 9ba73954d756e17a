/// <reference path="./pie-inferlet-model.d.ts" />
/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/grammar@0.2.0' {
  export type Error = import('pie:inferlet/types@0.2.0').Error;
  export type Runs = import('pie:inferlet/types@0.2.0').Runs;
  export type Model = import('pie:inferlet/model@0.2.0').Model;
  
  export class Matcher implements Disposable {
    /**
     * This type does not have a public constructor.
     */
    private constructor();
    /**
    * JSON valid against a JSON Schema (given as JSON text).
    */
    static fromJsonSchema(model: Model, schema: string): Matcher;
    /**
    * Any JSON object.
    */
    static fromJsonObject(model: Model): Matcher;
    /**
    * Text matching a regular expression as a whole.
    */
    static fromRegex(model: Model, regex: string): Matcher;
    /**
    * An EBNF grammar (W3C-style, as xgrammar reads it) and the name of its root rule.
    */
    static fromEbnf(model: Model, grammar: string, root: string): Matcher;
    /**
    * Exactly one of these strings.
    */
    static fromChoice(model: Model, choices: Array<string>): Matcher;
    /**
    * An xgrammar structural tag (its JSON text): free text with constrained tagged regions, as tool calls are
    * (`triggered_tags`, `tags_with_separator`, `sequence`, `or`, `tag`, `const_string`, `any_text`,
    * `json_schema` (compact JSON), `regex`, `grammar`).
    */
    static fromStructuralTag(model: Model, tag: string): Matcher;
    /**
    * Tokens allowed next (the model's end-of-sequence tokens only where the grammar may end).
    */
    allowed(): Runs;
    /**
    * Advances over a token; false (and no change) if the grammar does not allow it.
    */
    accept(token: number): boolean;
    /**
    * Undoes the last `tokens` accepted tokens.
    */
    rollback(tokens: number): void;
    /**
    * Whether the grammar is complete and an end-of-sequence token was accepted.
    */
    isTerminated(): boolean;
    /**
    * Back to the start of the grammar.
    */
    reset(): void;
    /**
    * A new matcher in the same state.
    */
    fork(): Matcher;
    [Symbol.dispose](): void;
  }
}
