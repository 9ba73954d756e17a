/// <reference path="./pie-inferlet-model.d.ts" />
/// <reference path="./pie-inferlet-types.d.ts" />
declare module 'pie:inferlet/context@0.2.0' {
  export type Error = import('pie:inferlet/types@0.2.0').Error;
  export type Model = import('pie:inferlet/model@0.2.0').Model;
  
  export class Context implements Disposable {
    /**
    * An empty context on the model.
    */
    constructor(model: Model)
    /**
    * A new context with the same tokens; full KV pages are shared, not copied.
    */
    fork(): Context;
    /**
    * Appends tokens; they are computed by the next forward pass or generation.
    */
    fill(tokens: Uint32Array): void;
    /**
    * Keeps the first `length` tokens.
    */
    truncate(length: number): void;
    /**
    * Number of tokens (computed and pending).
    */
    length(): number;
    tokens(): Uint32Array;
    /**
    * Frees the KV pages now (they are freed at the end of the invocation anyway).
    */
    release(): void;
    /**
    * Keeps this context's KV state under a name after the invocation ends.
    * Snapshots are a cache: within a per-tenant page quota (saving past it
    * evicts the tenant's least recently used; one alone past it is
    * `limit-exceeded`), and evicted when running work needs their pages;
    * `open` of an evicted one is `not-found` saying so.
    */
    save(name: string): void;
    /**
    * A new context continuing a saved snapshot.
    */
    static open(model: Model, name: string): Context;
    /**
    * Deletes a snapshot; false when there was none.
    */
    static deleteSnapshot(model: Model, name: string): boolean;
    static listSnapshots(model: Model): Array<string>;
    [Symbol.dispose](): void;
  }
}
