/** What a handler may use: engines by model name, the message hub, the log, children. */
import type { Engine } from '../../../engine/index.ts';
import type { Invocation } from '../invocation.ts';
import type { MessageHub } from '../message-hub.ts';
import type { ArgsOf, OpName, ReplyOf, WitChildLimits } from '../../ops.ts';

export interface HostSide {
  /** The engine serving a model the invocation may use; AbiError not-found otherwise. */
  engine(inv: Invocation, model: string): Engine;
  readonly hub: MessageHub;
  log(inv: Invocation, level: string, message: string): void;
  /** Starts a child of `parent` (runtime.launch); AbiError when it cannot. */
  launch(parent: Invocation, component: string, input: string, limits: WitChildLimits | null): Promise<Invocation>;
  /** Lets a child run on past its parent (child.detach); AbiError past the tenant's bound. */
  detach(child: Invocation): void;
}

/** Answers one operation; its arguments arrive as structured clones of what the guest side passed. */
export type Handler<K extends OpName> = (inv: Invocation, args: ArgsOf<K>, host: HostSide) => ReplyOf<K> | Promise<ReplyOf<K>>;
/** Handlers for the operations `K` (all of them by default: the host's table must answer every one). */
export type Handlers<K extends OpName = OpName> = { [Op in K]: Handler<Op> };
/** The operations of an interface, by prefix (`OpsIn<'context'>`). */
export type OpsIn<P extends string> = Extract<OpName, `${P}.${string}`>;
