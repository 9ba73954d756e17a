/**
 * The Responses API's response object, as the responses inferlet builds it
 * and as the gateway builds it for a response cancelled before it finished.
 */
import type { components } from '../../src/gateway/openapi-types.ts';
import { SAMPLING_DEFAULTS } from '../sdk/src/sampling.ts'; // shared with the gateway: not through the SDK's entry (it imports the ABI)
import type { ResponsesInput } from './protocol.ts';

type Request = components['schemas']['CreateResponse'];

export function responseObject(input: ResponsesInput<Request>, status: string, output: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  const body = input.body;
  return {
    id: input.id,
    object: 'response',
    created_at: input.created,
    status,
    error: null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: input.model,
    output,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    temperature: body.temperature ?? SAMPLING_DEFAULTS.temperature,
    text: { format: body.text?.format ?? { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? SAMPLING_DEFAULTS.top_p,
    truncation: body.truncation ?? 'disabled',
    usage: null,
    metadata: body.metadata ?? {},
    store: body.store ?? true,
    user: body.user ?? null,
    top_logprobs: body.top_logprobs ?? null,
    max_tool_calls: body.max_tool_calls ?? null,
    prompt_cache_key: body.prompt_cache_key ?? null,
    prompt_cache_retention: body.prompt_cache_retention ?? null,
    safety_identifier: body.safety_identifier ?? null,
    ...extra,
  };
}
