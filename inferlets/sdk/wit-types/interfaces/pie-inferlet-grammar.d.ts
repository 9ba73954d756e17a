/// <reference path="./pie-inferlet-model.d.ts" />
/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/grammar@0.1.0' {
  export type Error = import('pie:inferlet/types@0.1.0').Error;
  export type Runs = import('pie:inferlet/types@0.1.0').Runs;
  export type Model = import('pie:inferlet/model@0.1.0').Model;
  
  export class Matcher implements Disposable {
    /**
     * This type does not have a public constructor.
     */
    private constructor();
    static fromJsonSchema(model: Model, schema: string): Matcher;
    static fromRegex(model: Model, regex: string): Matcher;
    static fromEbnf(model: Model, grammar: string, root: string): Matcher;
    /**
    * Tokens allowed next.
    */
    allowed(): Runs;
    /**
    * Advances over a token; false if the grammar does not allow it.
    */
    accept(token: number): boolean;
    isTerminated(): boolean;
    reset(): void;
    [Symbol.dispose](): void;
  }
}
