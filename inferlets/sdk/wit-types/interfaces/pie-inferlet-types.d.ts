declare module 'pie:inferlet/types@0.2.0' {
  /**
   * Why a call failed.
   * # Variants
   * 
   * ## `"invalid-argument"`
   * 
   * An argument is out of range or malformed (the message names it).
   * ## `"not-found"`
   * 
   * A model, snapshot or queue that does not exist.
   * ## `"limit-exceeded"`
   * 
   * A per-invocation limit (pages, tokens, wall time) would be exceeded.
   * ## `"context-length-exceeded"`
   * 
   * The context would be longer than the model accepts (a text to
   * encode or tokens to append): no retry of the same request fits.
   * ## `"kv-cache-exhausted"`
   * 
   * The KV cache cannot hold the request even when empty (or within the
   * tenant's share of it).
   * ## `"overloaded"`
   * 
   * No room now: the KV cache stayed full with other work for the
   * server's queueing time. Worth trying again later.
   * ## `"busy"`
   * 
   * The context is already running a forward pass or a generation.
   * ## `"cancelled"`
   * 
   * The invocation or generation was cancelled.
   * ## `"unsupported"`
   * 
   * The server does not support this (yet); the message says what.
   * ## `"internal"`
   * 
   * A bug in the server.
   */
  export type ErrorCode = 'invalid-argument' | 'not-found' | 'limit-exceeded' | 'context-length-exceeded' | 'kv-cache-exhausted' | 'overloaded' | 'busy' | 'cancelled' | 'unsupported' | 'internal';
  export interface Error {
    code: ErrorCode,
    message: string,
  }
  /**
   * Sampling parameters, named as in the OpenAI API. A zero value turns a
   * processor off (top-p and repetition-penalty: 1).
   */
  export interface Sampling {
    /**
     * 0 is greedy.
     */
    temperature: number,
    topP: number,
    topK: number,
    minP: number,
    presencePenalty: number,
    frequencyPenalty: number,
    repetitionPenalty: number,
    logitBias: Array<[number, number]>,
    /**
     * Makes sampling repeatable (32 bits: guest languages disagree on how a u64 looks).
     */
    seed?: number,
  }
  /**
   * A set of integers (token ids, or key positions) as run lengths starting
   * with an included run: [in, out, in, out, ...]; values past the last run
   * are excluded. [0, 5, 3] is {5, 6, 7}.
   */
  export type Runs = Uint32Array;
  /**
   * A token and its log-probability.
   */
  export interface TokenLogprob {
    token: number,
    logprob: number,
  }
}
