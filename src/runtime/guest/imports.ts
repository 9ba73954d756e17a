/** What a guest imports: each interface of the ABI, answered in the worker or through `env` (see ops.ts). */
import type { InterfaceName } from '../abi.ts';
import { guestChat } from './chat.ts';
import { guestContext } from './context.ts';
import type { GuestEnv } from './env.ts';
import { guestGrammar } from './grammar.ts';
import { guestInference } from './inference.ts';
import { guestMessaging } from './messaging.ts';
import { guestModel } from './model.ts';
import { guestOutput } from './output.ts';
import { guestRuntime } from './runtime.ts';
import { guestSession } from './session.ts';

/** One instance's imports, by interface (jco's shape: functions, and classes for resources). */
export function guestImports(env: GuestEnv): Record<InterfaceName, object> {
  const grammar = guestGrammar(env);
  return {
    types: {},
    runtime: guestRuntime(env),
    model: guestModel(env),
    context: guestContext(env),
    grammar,
    inference: guestInference(env),
    chat: guestChat(grammar),
    messaging: guestMessaging(env),
    session: guestSession(env),
    output: guestOutput(env),
  };
}
