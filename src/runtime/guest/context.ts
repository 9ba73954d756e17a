/**
 * pie:inferlet/context. A guest's context is a handle the worker allocates;
 * the host keeps the engine context under that handle for the invocation.
 * Creating and releasing need no answer, so they cost the guest no wait; so
 * does a fill this side can check in full (see `fill`).
 */
import type { GuestEnv } from './env.ts';
import type { GuestModel } from './model.ts';

export interface GuestContext {
  readonly handle: number;
  /** Its length while only this side changed it (create, fill, truncate, fork of such); undefined once the host may have (generate, forward, open). */
  known: number | undefined;
}

export function guestContext(env: GuestEnv) {
  class Context implements GuestContext {
    readonly handle: number;
    known: number | undefined;
    private readonly model: GuestModel;
    private released = false;
    /** `handle` is given when the host side already exists (fork, open). */
    constructor(model: GuestModel, handle?: number, known?: number) {
      this.model = model;
      if (handle !== undefined) {
        this.handle = handle;
        this.known = known;
        return;
      }
      this.handle = env.handle();
      this.known = 0;
      env.send('context.create', [this.handle, model.name]);
    }
    async fork() {
      const h = env.handle();
      await env.call('context.fork', [this.handle, h]);
      return new Context(this.model, h, this.known);
    }
    /**
     * A fill the engine would take (known length, valid token ids, room left
     * in the model's context, no generation on it) goes without waiting for
     * an answer; any other waits for the host's, with its exact error.
     */
    async fill(tokens: Uint32Array) {
      const { vocabSize, contextLength } = env.models.get(this.model.name)!;
      if (!this.released && this.known !== undefined && this.known + tokens.length <= contextLength && tokens.every((t) => t < vocabSize)) {
        env.send('context.append', [this.handle, tokens]);
      } else {
        await env.call('context.fill', [this.handle, tokens]);
      }
      if (this.known !== undefined) this.known += tokens.length;
    }
    async truncate(length: number) {
      await env.call('context.truncate', [this.handle, length]);
      if (this.known !== undefined) this.known = Math.min(this.known, length);
    }
    length() {
      return env.call('context.length', [this.handle]);
    }
    tokens() {
      return env.call('context.tokens', [this.handle]);
    }
    release() {
      if (this.released) return;
      this.released = true;
      env.send('context.release', [this.handle]);
    }
    async save(name: string) {
      await env.call('context.save', [this.handle, name]);
    }
    static async open(model: GuestModel, name: string) {
      const h = env.handle();
      await env.call('context.open', [h, model.name, name]);
      return new Context(model, h, undefined);
    }
    static deleteSnapshot(model: GuestModel, name: string) {
      return env.call('context.delete-snapshot', [model.name, name]);
    }
    static listSnapshots(model: GuestModel) {
      return env.call('context.list-snapshots', [model.name]);
    }
    /** The guest dropped its handle. */
    [Symbol.dispose]() {
      this.release();
    }
  }
  return { Context };
}
