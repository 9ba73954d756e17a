/**
 * The inferlet SDK: write an inferlet in TypeScript, build it with
 * `pie build`, run it with `pie run` or behind a gateway route.
 *
 * @example
 * import { inferlet, Model, Sampler } from '@pie/inferlet';
 *
 * export const run = inferlet<{ prompt: string }>(({ prompt }) => {
 *   const model = Model.load();
 *   const ctx = model.newContext().fill(prompt);
 *   return ctx.generate({ sampling: Sampler.greedy(), max_tokens: 64, stream: true }).result();
 * });
 */
export { inferlet } from './inferlet.ts';
export { Model, type ChatMessage, type ChatOptions, type ModelInfo, type ParsedToolCalls, type ToolCall, type ToolDefinition } from './model.ts';
export { Context, type GenerateOptions, type PromptLogprob, type StreamFormat, type StepOptions, type StepOutput, type StepResult, type ToolCallOptions } from './context.ts';
export { Generation, type Chunk, type GenerationResult, type TokenLogprob } from './generation.ts';
export { SAMPLING_DEFAULTS, Sampler, type SamplingOptions } from './sampling.ts';
export { Grammar, Matcher } from './grammar.ts';
export { rangesToRuns, toRuns, windowWithSinks } from './runs.ts';
export { queue, topic } from './messaging.ts';
export { session } from './session.ts';
export { emit, isCancelled, setHeader, setResult, setStatus } from './output.ts';
export { Child, input, instanceId, launch, log, models, now, tenant, type ChildEnd, type ChildLimits } from './runtime.ts';
export { PieError, type ErrorCode } from './errors.ts';
