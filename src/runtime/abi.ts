/**
 * The ABI as the runtime sees it: the WIT package, the interfaces it grants
 * (deny by default: nothing else), and which imports may suspend the guest
 * while the host awaits the engine (JSPI).
 */
import { fileURLToPath } from 'node:url';

export const WIT_PACKAGE = 'pie:inferlet';
export const WIT_VERSION = '0.2.0';
/** The WIT folder `pie build` componentizes against. */
export const WIT_DIR = fileURLToPath(new URL('../../wit', import.meta.url));
export const WORLD = 'inferlet';

export const INTERFACES = ['types', 'runtime', 'model', 'context', 'grammar', 'inference', 'chat', 'messaging', 'output'] as const;
export type InterfaceName = (typeof INTERFACES)[number];

/** `pie:inferlet/context@0.2.0` → `pie:inferlet/context` (how jco keys the imports object). */
export function interfaceKey(name: InterfaceName): string {
  return `${WIT_PACKAGE}/${name}`;
}

/**
 * Imports that wait for the engine or for other inferlets. They suspend the
 * guest's stack (JSPI) while the host's promise is pending; everything else
 * is answered synchronously inside the worker.
 */
const SUSPENDING: Record<string, string[]> = {
  context: ['[method]context.fork', '[method]context.fill', '[method]context.truncate', '[method]context.length', '[method]context.tokens', '[method]context.save', '[static]context.open', '[static]context.delete-snapshot', '[static]context.list-snapshots'],
  grammar: ['[static]matcher.from-json-schema', '[static]matcher.from-json-object', '[static]matcher.from-regex', '[static]matcher.from-ebnf', '[static]matcher.from-choice', '[static]matcher.from-structural-tag', '[method]matcher.allowed', '[method]matcher.accept', '[method]matcher.rollback', '[method]matcher.is-terminated', '[method]matcher.fork'],
  inference: ['forward', 'prompt-logprobs', '[method]generation.next', '[method]generation.finish'],
  chat: ['tool-call-matcher'],
  messaging: ['push', 'pull', 'broadcast', '[method]subscription.next'],
};

export const ASYNC_IMPORTS: string[] = Object.entries(SUSPENDING).flatMap(([iface, fns]) => fns.map((fn) => `${WIT_PACKAGE}/${iface}@${WIT_VERSION}#${fn}`));

export type ImportVerdict = { ok: true } | { ok: false; reason: string };

/** Whether a component may import `name` (as jco reports it, e.g. `wasi:filesystem/types@0.2.6`). */
export function checkImport(name: string): ImportVerdict {
  const m = /^([^/@]+)\/([^@]+)(?:@(.+))?$/.exec(name);
  if (m && m[1] === WIT_PACKAGE && (INTERFACES as readonly string[]).includes(m[2]!)) {
    if (m[3] && m[3] !== WIT_VERSION) return { ok: false, reason: `${name}: this server speaks ${WIT_PACKAGE}@${WIT_VERSION}` };
    return { ok: true };
  }
  return { ok: false, reason: `${name} is not granted to inferlets (only ${WIT_PACKAGE}@${WIT_VERSION} interfaces are)` };
}

/** Error codes of the ABI's `error` record. */
export type ErrorCode = 'invalid-argument' | 'not-found' | 'limit-exceeded' | 'context-length-exceeded' | 'kv-cache-exhausted' | 'overloaded' | 'busy' | 'cancelled' | 'unsupported' | 'internal';

/** An expected failure, returned to the guest as `err({code, message})`. */
export class AbiError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'AbiError';
    this.code = code;
  }
}
