import { describe, expect, it } from 'vitest';
import type { StoredResponse } from './response-store.ts';
import { chainMessages } from './responses-routes.ts';

const stored = (instructions: string | null, inputItems: Array<Record<string, unknown>>, outputItems: Array<Record<string, unknown>>): StoredResponse => ({
  id: 'resp_x',
  tenant: 't',
  model: 'm',
  createdAt: 0,
  status: 'completed',
  previousResponseId: null,
  response: { instructions },
  inputItems,
  outputItems,
  contextTokens: null,
});

describe('a stored conversation as chat messages', () => {
  it('reads items as the built-in reads a request: parallel calls of one turn are one assistant message, results name their call', () => {
    const chain = [
      stored('Be brief.', [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Weather in Paris and Rome?' }] }], [
        { type: 'function_call', call_id: 'c1', name: 'weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call', call_id: 'c2', name: 'weather', arguments: '{"city":"Rome"}' },
      ]),
      stored(null, [
        { type: 'function_call_output', call_id: 'c1', output: 'sunny' },
        { type: 'function_call_output', call_id: 'c2', output: 'rain' },
      ], [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Sunny, and rain.' }] }]),
    ];
    expect(chainMessages(chain)).toEqual([
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
          { id: 'c2', type: 'function', function: { name: 'weather', arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: 'tool', content: 'sunny', tool_call_id: 'c1' },
      { role: 'tool', content: 'rain', tool_call_id: 'c2' },
      { role: 'assistant', content: 'Sunny, and rain.' },
    ]);
  });
});
