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

export const INTERFACES = ['types', 'runtime', 'model', 'context', 'grammar', 'inference', 'chat', 'messaging', 'session', 'output'] as const;
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
  runtime: ['launch', '[method]child.next-event', '[method]child.wait', '[method]child.detach'],
  context: ['[method]context.fork', '[method]context.fill', '[method]context.truncate', '[method]context.length', '[method]context.tokens', '[method]context.save', '[static]context.open', '[static]context.delete-snapshot', '[static]context.list-snapshots'],
  grammar: ['[static]matcher.from-json-schema', '[static]matcher.from-json-object', '[static]matcher.from-regex', '[static]matcher.from-ebnf', '[static]matcher.from-choice', '[static]matcher.from-structural-tag', '[method]matcher.allowed', '[method]matcher.accept', '[method]matcher.rollback', '[method]matcher.is-terminated', '[method]matcher.fork'],
  inference: ['forward', 'prompt-logprobs', '[method]generation.next', '[method]generation.finish'],
  chat: ['tool-call-matcher'],
  messaging: ['push', 'pull', 'broadcast', '[method]subscription.next'],
  session: ['receive'],
};

export const ASYNC_IMPORTS: string[] = Object.entries(SUSPENDING).flatMap(([iface, fns]) => fns.map((fn) => `${WIT_PACKAGE}/${iface}@${WIT_VERSION}#${fn}`));

/**
 * The WASI 0.2 subset granted (deny by default): what ordinary toolchains
 * (Rust `wasm32-wasip2`, componentize-py, TinyGo, jco without stubs) import
 * even for pure computation. Clocks and randomness are real; the environment
 * and arguments are empty; `exit` ends the invocation; stdout and stderr go
 * to the invocation's log (bounded); stdin is closed; the filesystem has no
 * folders. Sockets, HTTP and anything else are refused at load.
 * Each interface with what it provides, named as jco's glue reads them.
 */
export const WASI_GRANTED: Readonly<Record<string, readonly string[]>> = {
  'wasi:clocks/monotonic-clock': ['now', 'resolution', 'subscribeInstant', 'subscribeDuration'],
  'wasi:clocks/wall-clock': ['now', 'resolution'],
  'wasi:random/random': ['getRandomBytes', 'getRandomU64'],
  'wasi:random/insecure': ['getInsecureRandomBytes', 'getInsecureRandomU64'],
  'wasi:random/insecure-seed': ['insecureSeed'],
  'wasi:cli/environment': ['getEnvironment', 'getArguments', 'initialCwd'],
  'wasi:cli/exit': ['exit', 'exitWithCode'],
  'wasi:cli/stdin': ['getStdin'],
  'wasi:cli/stdout': ['getStdout'],
  'wasi:cli/stderr': ['getStderr'],
  'wasi:cli/terminal-input': ['TerminalInput'],
  'wasi:cli/terminal-output': ['TerminalOutput'],
  'wasi:cli/terminal-stdin': ['getTerminalStdin'],
  'wasi:cli/terminal-stdout': ['getTerminalStdout'],
  'wasi:cli/terminal-stderr': ['getTerminalStderr'],
  'wasi:io/error': ['Error'],
  'wasi:io/poll': ['Pollable', 'poll'],
  'wasi:io/streams': ['InputStream', 'OutputStream'],
  'wasi:filesystem/types': ['Descriptor', 'DirectoryEntryStream', 'filesystemErrorCode'],
  'wasi:filesystem/preopens': ['getDirectories'],
};

/** WASI versions granted: 0.2.x (what jco's glue and the interfaces above speak). */
const WASI_VERSION = /^0\.2\.\d+$/;

/** Granted WASI imports that wait (a sleep): they suspend the guest like the ABI's, for the versions `imports` name. */
export function wasiSuspending(imports: readonly string[]): string[] {
  return imports.filter((i) => i.startsWith('wasi:io/poll@')).flatMap((i) => [`${i}#poll`, `${i}#[method]pollable.block`]);
}

export type ImportVerdict = { ok: true } | { ok: false; reason: string };

const GRANTED = `only ${WIT_PACKAGE}@${WIT_VERSION} interfaces and a WASI 0.2 subset (clocks, random, cli environment/exit/stdio, io, filesystem without folders) are`;

/** Whether a component may import `name` (as jco reports it, e.g. `wasi:filesystem/types@0.2.6`). */
export function checkImport(name: string): ImportVerdict {
  const m = /^([^/@]+)\/([^@]+)(?:@(.+))?$/.exec(name);
  if (m && m[1] === WIT_PACKAGE && (INTERFACES as readonly string[]).includes(m[2]!)) {
    if (m[3] && m[3] !== WIT_VERSION) return { ok: false, reason: `${name}: this server speaks ${WIT_PACKAGE}@${WIT_VERSION}` };
    return { ok: true };
  }
  if (m && Object.hasOwn(WASI_GRANTED, `${m[1]}/${m[2]}`)) {
    if (!m[3] || !WASI_VERSION.test(m[3])) return { ok: false, reason: `${name}: this server grants WASI 0.2.x` };
    return { ok: true };
  }
  return { ok: false, reason: `${name} is not granted to inferlets (${GRANTED})` };
}

/**
 * What the glue of a transpiled component reads from a granted WASI
 * interface but this server does not provide (a function of a newer 0.2
 * release), as `interface: name` lines; empty when all is there.
 */
export function missingWasiFunctions(glue: string): string[] {
  const missing: string[] = [];
  for (const m of glue.matchAll(/const \{([^}]*)\} = imports\['(wasi:[^']+)'\];/g)) {
    const provided = WASI_GRANTED[m[2]!] ?? [];
    for (const part of m[1]!.split(',')) {
      const fn = part.split(':')[0]!.trim();
      if (fn && !provided.includes(fn)) missing.push(`${m[2]}: ${fn}`);
    }
  }
  return missing;
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
