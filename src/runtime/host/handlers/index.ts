/** The host's answer to every operation of the ABI (ops.ts): tsc checks that none is missing. */
import { contextHandlers } from './context.ts';
import { grammarHandlers } from './grammar.ts';
import type { Handlers } from './host-side.ts';
import { inferenceHandlers } from './inference.ts';
import { messagingHandlers } from './messaging.ts';
import { outputHandlers } from './output.ts';
import { runtimeHandlers } from './runtime.ts';
import { sessionHandlers } from './session.ts';

export const HANDLERS: Handlers = { ...runtimeHandlers, ...contextHandlers, ...grammarHandlers, ...inferenceHandlers, ...messagingHandlers, ...sessionHandlers, ...outputHandlers };
