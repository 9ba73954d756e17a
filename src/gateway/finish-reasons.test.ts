import { describe, expect, it } from 'vitest';
import type { InvocationResult } from '../runtime/host/invocation.ts';
import { choicesFinishReasons, responseFinishReasons } from './finish-reasons.ts';

const result = (body: unknown): InvocationResult => ({ data: body === null ? null : JSON.stringify(body), status: 200, headers: {} });
const chunk = (choices: object[]) => ({ event: 'message', data: JSON.stringify({ object: 'chat.completion.chunk', choices }) });

describe('finish reasons read from the API answer', () => {
  it("reads each choice's finish_reason of a chat completion or completion body, tool_calls included", () => {
    const body = { choices: [{ index: 0, finish_reason: 'tool_calls' }, { index: 1, finish_reason: 'length' }, { index: 2, finish_reason: 'stop' }] };
    expect(choicesFinishReasons().reasons(result(body))).toEqual(['tool_calls', 'length', 'stop']);
    expect(choicesFinishReasons().reasons(result({ error: { message: 'x' } }))).toEqual([]);
    expect(choicesFinishReasons().reasons({ data: 'not json', status: 200, headers: {} })).toEqual([]);
  });

  it("reads a stream's final chunks, one per choice, and not a delta whose text looks like one", () => {
    const reader = choicesFinishReasons();
    reader.event(chunk([{ index: 0, delta: { content: '"finish_reason":"stop"' }, finish_reason: null }]));
    reader.event(chunk([{ index: 1, delta: { content: 'Hi' }, finish_reason: null }]));
    reader.event(chunk([{ index: 0, delta: {}, finish_reason: 'length' }]));
    reader.event(chunk([{ index: 1, delta: {}, finish_reason: 'tool_calls' }]));
    reader.event({ event: 'message', data: '[DONE]' });
    expect(reader.reasons(result(null))).toEqual(['length', 'tool_calls']);
  });

  it('reads a response: incomplete is length, a function call tool_calls, else stop', () => {
    const response = (status: string, output: object[]) => result({ response: { status, output }, context_tokens: [] });
    expect(responseFinishReasons().reasons(response('incomplete', [{ type: 'message' }]))).toEqual(['length']);
    expect(responseFinishReasons().reasons(response('completed', [{ type: 'message' }, { type: 'function_call' }]))).toEqual(['tool_calls']);
    expect(responseFinishReasons().reasons(response('completed', [{ type: 'message' }]))).toEqual(['stop']);
    expect(responseFinishReasons().reasons(result(null))).toEqual([]);
  });
});
