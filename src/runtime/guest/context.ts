/**
 * pie:inferlet/context. A guest's context is a handle the worker allocates;
 * the host keeps the engine context under that handle for the invocation.
 * Creating and releasing need no answer, so they cost the guest no wait.
 */
import type { GuestEnv } from './env.ts';
import type { GuestModel } from './model.ts';

export interface GuestContext {
  readonly handle: number;
}

export function guestContext(env: GuestEnv) {
  class Context implements GuestContext {
    readonly handle: number;
    private released = false;
    /** `handle` is given when the host side already exists (fork, open). */
    constructor(model: GuestModel, handle?: number) {
      if (handle !== undefined) {
        this.handle = handle;
        return;
      }
      this.handle = env.handle();
      env.send('context.create', [this.handle, model.name]);
    }
    async fork() {
      const h = env.handle();
      await env.call('context.fork', [this.handle, h]);
      return new Context(null as never, h);
    }
    async fill(tokens: Uint32Array) {
      await env.call('context.fill', [this.handle, tokens]);
    }
    async truncate(length: number) {
      await env.call('context.truncate', [this.handle, length]);
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
      return new Context(model, h);
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
