/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/model@0.2.0' {
  export type Error = import('pie:inferlet/types@0.2.0').Error;
  export interface ModelInfo {
    name: string,
    architecture: string,
    vocabSize: number,
    /**
     * Longest context, in tokens.
     */
    contextLength: number,
    /**
     * Tokens per KV page.
     */
    pageSize: number,
    eosTokenIds: Uint32Array,
    bosTokenId?: number,
    /**
     * Whether the model has a chat template of its own (otherwise a plain fallback is used).
     */
    hasChatTemplate: boolean,
  }
  
  export class Model implements Disposable {
    /**
     * This type does not have a public constructor.
     */
    private constructor();
    /**
    * Loads a model by its served name.
    */
    static load(name: string): Model;
    info(): ModelInfo;
    /**
    * Text to token ids; `add-bos` prepends the beginning-of-sequence token when the model uses one.
    * A text too long for any context of the model is `context-length-exceeded` before it is tokenized.
    */
    encode(text: string, addBos: boolean): Uint32Array;
    decode(tokens: Uint32Array, skipSpecialTokens: boolean): string;
    /**
    * The id of a token given its text (special tokens included).
    */
    tokenId(token: string): number | undefined;
    /**
    * The special tokens (beginning and end of sequence, chat markers...) with their ids.
    */
    specialTokens(): Array<[string, number]>;
    /**
    * The UTF-8 bytes each token stands for on its own (a byte-fallback token is its one byte,
    * so a piece may be part of a character): what logprobs report as a token's text.
    */
    tokenBytes(tokens: Uint32Array): Array<Uint8Array>;
    [Symbol.dispose](): void;
  }
}
