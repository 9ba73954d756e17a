/** What the host-side half of a binding may use: engines by model name, the message hub, the log. */
import type { Engine } from '../../engine/index.ts';
import type { Invocation } from '../invocation.ts';
import type { MessageHub } from '../message-hub.ts';

export interface HostSide {
  /** The engine serving a model the invocation may use; AbiError not-found otherwise. */
  engine(inv: Invocation, model: string): Engine;
  readonly hub: MessageHub;
  log(inv: Invocation, level: string, message: string): void;
}

// Arguments arrive from a worker as structured clones of what the guest passed.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Handler = (inv: Invocation, args: any, host: HostSide) => unknown;
export type Handlers = Record<string, Handler>;
