/**
 * Tool calling with real tool-aware chat templates (Hermes-style and Llama 3.1
 * JSON, from ../shared/chat-templates) on tiny random models: the prompt as the
 * template renders it, `auto` calls once the model writes the trigger (forced
 * with logit_bias), text before a call streamed as content.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type Engine } from '../src/engine/index.ts';
import { loadModelText } from '../src/model/load.ts';
import { guestChat } from '../src/runtime/guest/chat.ts';
import type { GuestModel } from '../src/runtime/guest/model.ts';
import { startGateway, type TestServer } from './gateway-helpers.ts';
import { haveChatTemplates, SKIP_CHAT_TEMPLATES, templatedModelDir } from './helpers.ts';

const parameters = { type: 'object', properties: { city: { type: 'string', maxLength: 10, description: 'The city' } }, required: ['city'], additionalProperties: false };
const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters } }];
const conversation = [
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: '', toolCalls: JSON.stringify([{ id: 'call_abcdefghi', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }]) },
  { role: 'tool', content: 'sunny', toolCallId: 'call_abcdefghi' },
];
const witTools = [{ name: 'get_weather', description: 'Weather in a city', parameters: JSON.stringify(parameters) }];

function render(dir: string): string {
  const text = loadModelText(dir);
  const chat = guestChat({} as never);
  return chat.render({ text } as unknown as GuestModel, conversation, witTools, true);
}

describe.skipIf(!haveChatTemplates)(`tool-aware chat templates ${SKIP_CHAT_TEMPLATES}`, () => {
  it('renders a conversation with tools, calls and results as the Hermes template writes it', () => {
    const prompt = render(templatedModelDir('hermes-tools.jinja', ['<tool_call>', '</tool_call>']));
    expect(prompt).toContain('Here are the available tools: <tools> {"type": "function", "function": {"name": "get_weather", "description": "get_weather(city: str) - Weather in a city');
    // Arguments as an object (OpenAI sends JSON text), the result named after its call.
    expect(prompt).toContain('<|im_start|>assistant\n<tool_call>\n{ "arguments": {"city": "Paris"}, "name": "get_weather"}\n</tool_call> <|im_end|>\n');
    expect(prompt).toContain('<|im_start|>tool\n<tool_response>\n{"name": "get_weather", "content": "sunny"}\n</tool_response> <|im_end|>\n');
    expect(prompt.endsWith('<|im_start|>assistant\n')).toBe(true);
  });

  it('renders one as the Llama 3.1 JSON template writes it', () => {
    const prompt = render(templatedModelDir('llama3.1-json-tools.jinja'));
    expect(prompt).toContain('Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.');
    expect(prompt).toContain('<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>');
    expect(prompt).toContain('<|start_header_id|>ipython<|end_header_id|>\n\n{"output": "sunny"}<|eot_id|>');
  });

  describe('through the gateway', () => {
    let hermes: Engine;
    let llama: Engine;
    let mistral: Engine;
    let server: TestServer;
    let client: OpenAI;
    beforeAll(async () => {
      hermes = await startEngine(templatedModelDir('hermes-tools.jinja', ['<tool_call>', '</tool_call>']), { threads: 1, numPages: 256, name: 'hermes' });
      llama = await startEngine(templatedModelDir('llama3.1-json-tools.jinja'), { threads: 1, numPages: 256, name: 'llama' });
      mistral = await startEngine(templatedModelDir('mistral-parallel-tools.jinja', ['[TOOL_CALLS]'], true), { threads: 1, numPages: 256, name: 'mistral' });
      server = await startGateway([hermes, llama, mistral]);
      client = server.client();
    });
    afterAll(async () => {
      await server?.close();
      for (const e of [hermes, llama, mistral]) {
        expect(e?.numContexts).toBe(0);
        await e?.close();
      }
    });
    const trigger = () => hermes.model.tokenizer.encode('<tool_call>', { addBos: false });
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }];

    it('auto: once the model writes the trigger, the rest is a valid call', async () => {
      expect(trigger()).toHaveLength(1); // an added token, as Qwen has
      const r = await client.chat.completions.create({ model: 'hermes', messages, tools, parallel_tool_calls: false, logit_bias: { [trigger()[0]!]: 100 }, temperature: 1, seed: 1, max_tokens: 80 });
      const choice = r.choices[0]!;
      expect(choice.finish_reason).toBe('tool_calls');
      expect(choice.message.content).toBeNull();
      const call = choice.message.tool_calls![0]!;
      expect(call.type === 'function' && call.function.name).toBe('get_weather');
      expect(call.type === 'function' && typeof JSON.parse(call.function.arguments).city).toBe('string');
    });

    it('auto: text before a call is streamed as content, then the call', async () => {
      let found = false;
      for (let seed = 0; seed < 30 && !found; seed++) {
        const body = { model: 'hermes', messages, tools, parallel_tool_calls: false, logit_bias: { [trigger()[0]!]: 5 }, temperature: 1, seed, max_tokens: 80 };
        const whole = await client.chat.completions.create(body);
        const m = whole.choices[0]!.message;
        if (!m.tool_calls?.length || !m.content) continue;
        found = true;
        const stream = await client.chat.completions.create({ ...body, stream: true });
        let content = '';
        const args: string[] = [];
        for await (const c of stream) {
          const d = c.choices[0]?.delta;
          if (d?.content) {
            expect(args, 'content comes before the call').toEqual([]);
            content += d.content;
          }
          for (const t of d?.tool_calls ?? []) args.push(t.function?.arguments ?? '');
        }
        expect(content.trim()).toBe(m.content);
        expect(args.join('')).toBe(m.tool_calls[0]!.type === 'function' ? m.tool_calls[0]!.function.arguments : '');
      }
      expect(found, 'some seed writes text, then calls').toBe(true);
    });

    it("auto on Mistral's format, whose [TOOL_CALLS] is a special token: the model's own token starts a valid call", async () => {
      const marker = mistral.model.tokenizer.encode('[TOOL_CALLS]', { addBos: false });
      expect(marker).toHaveLength(1);
      expect(mistral.model.tokenizer.markerIds.has(marker[0]!)).toBe(true);
      const r = await client.chat.completions.create({ model: 'mistral', messages, tools, parallel_tool_calls: false, logit_bias: { [marker[0]!]: 100 }, temperature: 1, seed: 4, max_tokens: 80 });
      const choice = r.choices[0]!;
      expect(choice.finish_reason).toBe('tool_calls');
      const call = choice.message.tool_calls![0]!;
      expect(call.type === 'function' && call.function.name).toBe('get_weather');
      expect(call.type === 'function' && typeof JSON.parse(call.function.arguments).city).toBe('string');
    });

    it('required on the Llama 3.1 format: one call a turn, valid', async () => {
      for (const seed of [1, 2, 3]) {
        const r = await client.chat.completions.create({ model: 'llama', messages, tools, tool_choice: 'required', temperature: 1, seed, max_tokens: 80 });
        const calls = r.choices[0]!.message.tool_calls!;
        expect(calls).toHaveLength(1);
        expect(calls[0]!.type === 'function' && JSON.parse(calls[0]!.function.arguments).city).toEqual(expect.any(String));
      }
    });
  });
});
