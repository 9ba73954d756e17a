/**
 * The ABI's operations between a guest's imports (in its worker) and the
 * host: each one's name, arguments and reply, declared once. The guest side
 * calls them through `GuestEnv.call`/`send`, the host side answers them with
 * a `Handlers` table, and `tsc` checks both against this file: an operation
 * without a handler, a handler for no operation, or arguments of the wrong
 * shape do not compile.
 *
 * `Call` operations suspend the guest until the host answers; `Send`
 * operations expect no answer (the port keeps their order with the calls).
 * Records are the WIT's, as jco hands them over (camelCase fields, `tag`/`val`
 * variants, `Uint32Array` for `list<u32>`).
 */
import type { GrammarSource } from '../engine/grammar/source.ts';

interface Call<A extends unknown[], R> {
  args: A;
  reply: R;
  oneWay: false;
}

interface Send<A extends unknown[]> {
  args: A;
  reply: void;
  oneWay: true;
}

export interface WitTopLogprob {
  token: number;
  logprob: number;
}

export interface WitTokenLogprob extends WitTopLogprob {
  top: WitTopLogprob[];
}

export interface WitSampling {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  repetitionPenalty: number;
  logitBias: Array<[number, number]>;
  seed?: number;
}

export type WitOutputKind = { tag: 'sample'; val: WitSampling } | { tag: 'distribution'; val: number } | { tag: 'entropy' };

export interface WitOutputRequest {
  row?: number;
  kind: WitOutputKind;
  logitMask?: Uint32Array;
  topLogprobs: number;
}

export type WitOutput = { tag: 'token'; val: WitTokenLogprob } | { tag: 'distribution'; val: WitTopLogprob[] } | { tag: 'entropy'; val: number };

export interface WitForwardArgs {
  tokens: Uint32Array;
  positions?: Uint32Array;
  attention?: Uint32Array[];
  outputs: WitOutputRequest[];
}

export interface WitScored {
  token: number;
  logprob: number;
  rank: number;
  top: WitTopLogprob[];
}

export interface WitGenerateArgs {
  sampling: WitSampling;
  maxTokens?: number;
  stop: string[];
  stopTokenIds?: Uint32Array;
  ignoreEos: boolean;
  minTokens?: number;
  includeStopString: boolean;
  keepSpecialTokens: boolean;
  logprobs?: number;
  stream?: { event: string; template?: string; firstSeq: number; toolCalls?: { start: string; arguments: string } };
}

export interface WitChunk {
  text: string;
  tokens: Uint32Array;
  logprobs: WitTokenLogprob[];
}

export interface WitGenerationResult {
  text: string;
  tokens: Uint32Array;
  finishReason: string;
  stopString?: string;
  stopToken?: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  logprobs: WitTokenLogprob[];
  streamed: number;
}

export interface WitChildLimits {
  tokens?: number;
  kvPages?: number;
  wallTimeMs?: number;
}

export type WitChildEnd = { tag: 'succeeded'; val: string | undefined } | { tag: 'failed'; val: string } | { tag: 'cancelled'; val: string };

/** Every operation: `handle`s are ids the guest side allocates for host-side objects of its invocation. */
export interface Ops {
  'runtime.log': Send<[level: string, message: string]>;
  /** Starts a child under the guest's handle; its instance id. */
  'runtime.launch': Call<[handle: number, component: string, input: string, limits: WitChildLimits | null], string>;
  'child.next-event': Call<[handle: number, timeoutMs: number | undefined], [event: string, data: string] | null>;
  'child.wait': Call<[handle: number], WitChildEnd>;
  'child.cancel': Send<[handle: number]>;
  'child.detach': Call<[handle: number], void>;
  'child.drop': Send<[handle: number]>;

  'context.create': Send<[handle: number, model: string]>;
  'context.fork': Call<[handle: number, child: number], void>;
  'context.fill': Call<[handle: number, tokens: Uint32Array], void>;
  /** A fill the guest side has checked (valid tokens, room in the context, no generation on it): it cannot fail, so it costs no wait. */
  'context.append': Send<[handle: number, tokens: Uint32Array]>;
  'context.truncate': Call<[handle: number, length: number], void>;
  'context.length': Call<[handle: number], number>;
  'context.tokens': Call<[handle: number], Uint32Array>;
  'context.release': Send<[handle: number]>;
  'context.save': Call<[handle: number, name: string], void>;
  'context.open': Call<[handle: number, model: string, name: string], void>;
  'context.delete-snapshot': Call<[model: string, name: string], boolean>;
  'context.list-snapshots': Call<[model: string], string[]>;

  'grammar.create': Call<[handle: number, model: string, source: GrammarSource], void>;
  /** The allowed tokens as runs [in, out, in, ...] over the vocabulary. */
  'grammar.allowed': Call<[handle: number], Uint32Array>;
  'grammar.accept': Call<[handle: number, token: number], boolean>;
  'grammar.rollback': Call<[handle: number, tokens: number], void>;
  'grammar.is-terminated': Call<[handle: number], boolean>;
  'grammar.reset': Send<[handle: number]>;
  'grammar.fork': Call<[handle: number, child: number], void>;
  'grammar.drop': Send<[handle: number]>;

  'inference.forward': Call<[context: number, args: WitForwardArgs], WitOutput[]>;
  'inference.prompt-logprobs': Call<[context: number, top: number], Array<WitScored | undefined>>;
  /** Starts a generation under the guest's handle; a generation that could not start reports why to its first next/finish. */
  'inference.generate': Send<[context: number, generation: number, args: WitGenerateArgs, matcher: number | null]>;
  /** The chunks produced since the last call (waits for one), or null once the generation has ended. */
  'generation.next': Call<[generation: number], WitChunk[] | null>;
  'generation.finish': Call<[generation: number], WitGenerationResult>;
  'generation.cancel': Send<[generation: number]>;
  'generation.drop': Send<[generation: number]>;

  'messaging.push': Call<[queue: string, message: string], void>;
  'messaging.pull': Call<[queue: string, timeoutMs: number | undefined], string | null>;
  'messaging.broadcast': Call<[topic: string, message: string], void>;
  'messaging.subscribe': Send<[handle: number, topic: string]>;
  'messaging.next': Call<[handle: number, timeoutMs: number | undefined], string | null>;
  'messaging.unsubscribe': Send<[handle: number]>;

  'session.receive': Call<[timeoutMs: number | undefined], string | null>;
  /** A message the guest side has checked (its size). */
  'session.send': Send<[message: string]>;

  'output.emit': Send<[event: string, data: string]>;
  'output.set-result': Send<[data: string]>;
  'output.set-status': Send<[status: number]>;
  'output.set-header': Send<[name: string, value: string]>;
}

export type OpName = keyof Ops;
/** Operations the guest waits on. */
export type CallOp = { [K in OpName]: Ops[K]['oneWay'] extends false ? K : never }[OpName];
/** Operations with no answer. */
export type SendOp = Exclude<OpName, CallOp>;
export type ArgsOf<K extends OpName> = Ops[K]['args'];
export type ReplyOf<K extends OpName> = Ops[K]['reply'];

/** Every operation at run time, and whether it is one-way (the keys must be exactly the operations: tsc checks). */
export const ONE_WAY: { readonly [K in OpName]: Ops[K]['oneWay'] } = {
  'runtime.log': true,
  'runtime.launch': false,
  'child.next-event': false,
  'child.wait': false,
  'child.cancel': true,
  'child.detach': false,
  'child.drop': true,
  'context.create': true,
  'context.fork': false,
  'context.fill': false,
  'context.append': true,
  'context.truncate': false,
  'context.length': false,
  'context.tokens': false,
  'context.release': true,
  'context.save': false,
  'context.open': false,
  'context.delete-snapshot': false,
  'context.list-snapshots': false,
  'grammar.create': false,
  'grammar.allowed': false,
  'grammar.accept': false,
  'grammar.rollback': false,
  'grammar.is-terminated': false,
  'grammar.reset': true,
  'grammar.fork': false,
  'grammar.drop': true,
  'inference.forward': false,
  'inference.prompt-logprobs': false,
  'inference.generate': true,
  'generation.next': false,
  'generation.finish': false,
  'generation.cancel': true,
  'generation.drop': true,
  'messaging.push': false,
  'messaging.pull': false,
  'messaging.broadcast': false,
  'messaging.subscribe': true,
  'messaging.next': false,
  'messaging.unsubscribe': true,
  'session.receive': false,
  'session.send': true,
  'output.emit': true,
  'output.set-result': true,
  'output.set-status': true,
  'output.set-header': true,
};

export const OP_NAMES = Object.keys(ONE_WAY) as OpName[];

export function isOpName(op: string): op is OpName {
  return Object.hasOwn(ONE_WAY, op);
}
