/** pie:inferlet/context on the host: the engine contexts behind an invocation's handles. */
import { AbiError } from '../../abi.ts';
import type { Invocation, HeldContext } from '../invocation.ts';
import type { Handlers, OpsIn } from './host-side.ts';
import { toAbiError } from './errors.ts';

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

/** context.fill and context.append: the tokens go on the engine context. */
function append(inv: Invocation, [h, tokens]: [number, Uint32Array]): void {
  const { engine, ctx } = heldContext(inv, h);
  guarded(() => engine.append(ctx, Array.from(tokens)));
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
  'context.fill': append,
  // The same, checked by the guest side before it was sent (see guest/context.ts): a failure here fails the invocation.
  'context.append': append,
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
