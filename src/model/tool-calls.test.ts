import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHAT_TEMPLATES_DIR, SKIP_CHAT_TEMPLATES } from '../../test/helpers.ts';
import { ChatTemplate, FALLBACK_CHAT_TEMPLATE } from './chat-template.ts';
import { detectToolFormat, genericMessages, parseToolCalls, toolCallTag, type ToolFormat, type ToolSpec } from './tool-calls.ts';

const specials = { bos_token: '<s>', eos_token: '</s>' };
const template = (file: string) => new ChatTemplate(readFileSync(join(CHAT_TEMPLATES_DIR, file), 'utf8'), specials);
const weather: ToolSpec = { name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } };

/** A call as the format writes it (what its grammar allows). */
function written(format: ToolFormat, name: string, args: string): string {
  switch (format) {
    case 'hermes':
      return `<tool_call>\n{"name": "${name}", "arguments": ${args}}\n</tool_call>`;
    case 'generic':
      return `<tool_call>{"name": "${name}", "arguments": ${args}}</tool_call>`;
    case 'llama3_json':
      return `{"name": "${name}", "parameters": ${args}}`;
    case 'mistral':
      return `[TOOL_CALLS] [{"name": "${name}", "arguments": ${args}, "id": "abcdefghi"}]`;
  }
}

describe('tool-call formats', () => {
  it.skipIf(SKIP_CHAT_TEMPLATES !== '')(`knows a model's format from its chat template ${SKIP_CHAT_TEMPLATES}`, () => {
    expect(detectToolFormat(template('hermes-tools.jinja'))).toBe('hermes');
    expect(detectToolFormat(template('llama3.1-json-tools.jinja'))).toBe('llama3_json');
    expect(detectToolFormat(template('mistral-parallel-tools.jinja'))).toBe('mistral');
    expect(detectToolFormat(new ChatTemplate(FALLBACK_CHAT_TEMPLATE, specials, true))).toBe('generic');
    expect(detectToolFormat(new ChatTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %}", specials))).toBe('generic');
  });

  for (const format of ['hermes', 'generic', 'llama3_json', 'mistral'] as const) {
    it(`reads back the calls it writes, with the text around them: ${format}`, () => {
      const call = written(format, 'get_weather', '{"city": "Paris, \\"FR\\" {x}"}');
      expect(parseToolCalls(format, call)).toEqual({ content: '', calls: [{ name: 'get_weather', arguments: '{"city": "Paris, \\"FR\\" {x}"}', complete: true }] });
      const withText = parseToolCalls(format, `Let me check. ${call}`);
      expect(withText.content).toBe('Let me check. ');
      expect(withText.calls.map((c) => c.name)).toEqual(['get_weather']);
      expect(parseToolCalls(format, 'No call here.')).toEqual({ content: 'No call here.', calls: [] });
    });

    it(`reads a call as it streams: text held back while it may start a call, arguments as they come: ${format}`, () => {
      const call = written(format, 'get_weather', '{"city": "Paris"}');
      const text = `Sure. ${call}`;
      const seen: string[] = [];
      for (let n = 1; n <= text.length; n++) {
        const p = parseToolCalls(format, text.slice(0, n), false);
        expect(text.startsWith(p.content)).toBe(true); // content only grows, and never holds call text
        expect('Sure. '.startsWith(p.content) || p.content === 'Sure. ').toBe(true);
        if (p.calls[0]) seen.push(p.calls[0].arguments);
      }
      expect(seen.length).toBeGreaterThan(5);
      expect(seen.every((a, i) => i === 0 || a.startsWith(seen[i - 1]!))).toBe(true);
      expect(seen.at(-1)).toBe('{"city": "Paris"}');
      expect(parseToolCalls(format, text, false).calls[0]!.complete).toBe(true);
    });
  }

  it('reads arguments that are not objects, and leaves the separator between calls out of the content', () => {
    expect(parseToolCalls('hermes', '<tool_call>\n{"name": "f", "arguments": 5}\n</tool_call>').calls).toEqual([{ name: 'f', arguments: '5', complete: true }]);
    expect(parseToolCalls('llama3_json', '{"name": "f", "parameters": true}').calls).toEqual([{ name: 'f', arguments: 'true', complete: true }]);
    const two = `${written('hermes', 'a', '{}')}\n${written('hermes', 'b', '{}')}`;
    for (let n = 1; n <= two.length; n++) expect(parseToolCalls('hermes', two.slice(0, n), false).content).toBe('');
    expect(parseToolCalls('hermes', `${two}\nDone.`).content).toBe('\nDone.');
  });

  it('reads several calls in one turn', () => {
    const two = `${written('hermes', 'a', '{}')}\n${written('hermes', 'b', '{"x": [1, 2]}')}`;
    expect(parseToolCalls('hermes', two).calls.map((c) => [c.name, c.arguments])).toEqual([['a', '{}'], ['b', '{"x": [1, 2]}']]);
    const list = '[TOOL_CALLS] [{"name": "a", "arguments": {}, "id": "abcdefghi"}, {"name": "b", "arguments": {"x": 1}, "id": "bcdefghij"}]';
    expect(parseToolCalls('mistral', list).calls.map((c) => [c.name, c.arguments])).toEqual([['a', '{}'], ['b', '{"x": 1}']]);
  });

  it('builds the structural tag of each choice: free text with triggered calls, calls only, one function', () => {
    const tools = [weather, { name: 'noop', parameters: { type: 'object' } }];
    const auto = toolCallTag('hermes', tools, { mode: 'auto' }, true) as { format: { type: string; triggers: string[]; tags: unknown[]; stop_after_first: boolean } };
    expect(auto.format).toMatchObject({ type: 'triggered_tags', triggers: ['<tool_call>'], stop_after_first: false });
    expect(auto.format.tags).toHaveLength(2);
    const named = toolCallTag('hermes', tools, { mode: 'function', name: 'noop' }, false) as { format: { type: string; tags: Array<{ begin: string }>; at_least_one: boolean; stop_after_first: boolean } };
    expect(named.format).toMatchObject({ type: 'tags_with_separator', at_least_one: true, stop_after_first: true });
    expect(named.format.tags.map((t) => t.begin)).toEqual(['<tool_call>\n{"name": "noop", "arguments": ']);
    // Llama 3.1 writes one call a turn, whatever parallel_tool_calls says.
    expect(toolCallTag('llama3_json', tools, { mode: 'required' }, true)).toMatchObject({ format: { stop_after_first: true } });
  });

  it('describes tools in a system message for models without tool support, and writes past calls and results as text', () => {
    const messages = genericMessages(
      [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
        { role: 'tool', content: 'sunny', tool_call_id: 'call_1' },
      ],
      [weather],
      true,
    );
    expect(messages[0]!.role).toBe('system');
    expect(messages[0]!.content).toBe('Tools:\nget_weather(city: string): The weather in a city\nCall one as <tool_call>{"name": "<name>", "arguments": {…}}</tool_call>.');
    expect(messages[2]).toEqual({ role: 'assistant', content: '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' });
    expect(messages[3]).toEqual({ role: 'tool', content: '<tool_response>sunny</tool_response>' });
  });
});
