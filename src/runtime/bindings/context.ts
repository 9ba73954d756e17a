/**
 * pie:inferlet/context. A guest's context is a handle the worker allocates;
 * the host keeps the engine context under that handle for the invocation.
 * Creating and releasing need no answer, so they cost the guest no wait.
 */
import { AbiError } from '../abi.ts';
import type { GuestEnv } from '../guest-env.ts';
import type { Invocation, HeldContext } from '../invocation.ts';
import type { GuestModel } from './model.ts';
import type { Handlers, OpsIn } from './host-side.ts';
import { toAbiError } from './errors.ts';

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

/** The engine context behind a guest handle. */
export function heldContext(inv: Invocation, handle: number): HeldContext {
  const held = inv.contexts.get(handle);
  if (!held) throw new AbiError('invalid-argument', `context ${handle} has been released`);
  return held;
}

function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toAbiError(err);
  }
}

/** Contexts one invocation may hold at once (each costs host memory even without pages). */
export const MAX_CONTEXTS = 4096;

function checkRoom(inv: Invocation): void {
  if (inv.contexts.size >= MAX_CONTEXTS) throw new AbiError('limit-exceeded', `the invocation holds ${inv.contexts.size} contexts; the limit is ${MAX_CONTEXTS} (release those it is done with)`);
}

export const contextHandlers: Handlers<OpsIn<'context'>> = {
  'context.create': (inv, [h, model], host) => {
    checkRoom(inv);
    const engine = host.engine(inv, model);
    inv.contexts.set(h, { engine, ctx: engine.createContext(inv.tenant), family: h });
  },
  'context.fork': (inv, [h, child]) => {
    checkRoom(inv);
    const { engine, ctx, family } = heldContext(inv, h);
    inv.contexts.set(child, { engine, ctx: guarded(() => engine.fork(ctx)), family });
  },
  'context.fill': (inv, [h, tokens]) => {
    const { engine, ctx } = heldContext(inv, h);
    guarded(() => engine.append(ctx, Array.from(tokens as Uint32Array)));
  },
  'context.truncate': (inv, [h, length]) => {
    const { engine, ctx } = heldContext(inv, h);
    guarded(() => engine.truncate(ctx, length));
  },
  'context.length': (inv, [h]) => heldContext(inv, h).ctx.length,
  'context.tokens': (inv, [h]) => Uint32Array.from(heldContext(inv, h).ctx.tokens),
  'context.release': (inv, [h]) => {
    const held = inv.contexts.get(h);
    if (!held) return;
    inv.contexts.delete(h);
    held.engine.release(held.ctx);
  },
  'context.save': (inv, [h, name]) => {
    const { engine, ctx } = heldContext(inv, h);
    if (typeof name !== 'string' || name.length === 0 || name.length > 256) throw new AbiError('invalid-argument', 'a snapshot name is 1 to 256 characters');
    guarded(() => engine.saveSnapshot(ctx, name));
  },
  'context.open': (inv, [h, model, name], host) => {
    checkRoom(inv);
    const engine = host.engine(inv, model);
    inv.contexts.set(h, { engine, ctx: guarded(() => engine.openSnapshot(name, inv.tenant)), family: h });
  },
  'context.delete-snapshot': (inv, [model, name], host) => host.engine(inv, model).deleteSnapshot(name, inv.tenant),
  'context.list-snapshots': (inv, [model], host) => host.engine(inv, model).listSnapshots(inv.tenant),
};
