/**
 * Tool calling end to end on stories260K (a model that knows nothing of tools:
 * the generic format, tools described in a system message) with the official
 * openai package: named and required choices, streams, runTools with zod
 * functions, conversations with tool results, parallel calls, and the 400s.
 */
import OpenAI from 'openai';
import { zodFunction } from 'openai/helpers/zod';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { expectNothingHeld, servedEngine } from './gateway-helpers.ts';
import { haveStories, SKIP_STORIES, storiesModelDir } from './helpers.ts';

const Weather = z.object({ city: z.string().max(12), unit: z.enum(['celsius', 'fahrenheit']) });
const Time = z.object({ zone: z.string().max(8) });
const tools: OpenAI.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: z.toJSONSchema(Weather) as Record<string, unknown>, strict: true } },
  { type: 'function', function: { name: 'get_time', description: 'The time in a zone', parameters: z.toJSONSchema(Time) as Record<string, unknown> } },
];
const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
const schemas: Record<string, z.ZodType> = { get_weather: Weather, get_time: Time };

/** A call this server returned: a declared tool, arguments valid against its schema. */
function expectValid(call: OpenAI.ChatCompletionMessageToolCall): void {
  expect(call.type).toBe('function');
  expect(call.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
  if (call.type !== 'function') return;
  expect(Object.keys(schemas)).toContain(call.function.name);
  schemas[call.function.name]!.parse(JSON.parse(call.function.arguments));
}

describe.skipIf(!haveStories)(`tool calling on stories260K ${SKIP_STORIES}`, () => {
  const served = servedEngine(storiesModelDir);
  let client: OpenAI;
  let model: string;
  beforeAll(() => ({ client, model } = served));
  afterEach(() => expectNothingHeld(served.engine));

  it('answers a named tool_choice with a valid call of that function', async () => {
    // (stories260K would go on calling until max_tokens: one call, then it must end.)
    const r = await client.chat.completions.create({ model, messages, tools, tool_choice: { type: 'function', function: { name: 'get_time' } }, parallel_tool_calls: false, temperature: 1, seed: 1, max_tokens: 100 });
    const choice = r.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.tool_calls!.length).toBeGreaterThan(0);
    for (const call of choice.message.tool_calls!) {
      expectValid(call);
      expect(call.type === 'function' && call.function.name).toBe('get_time');
    }
  });

  it('required with two tools: 20 seeds at temperature 1 all call one of them with valid arguments', async () => {
    const runs = await Promise.all(Array.from({ length: 20 }, (_, seed) => client.chat.completions.create({ model, messages, tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 1, seed, max_tokens: 100 })));
    const names = new Set<string>();
    const args = new Set<string>();
    for (const r of runs) {
      const message = r.choices[0]!.message;
      expect(r.choices[0]!.finish_reason).toBe('tool_calls');
      expect(message.tool_calls).toHaveLength(1);
      expectValid(message.tool_calls![0]!);
      const call = message.tool_calls![0]!;
      if (call.type === 'function') {
        names.add(call.function.name);
        args.add(call.function.arguments);
      }
    }
    expect(names.size).toBe(2); // sampled: both tools get called
    expect(args.size).toBeGreaterThan(10);
  });

  it('streams calls as OpenAI does, which the SDK accumulates into valid calls; n and logprobs keep working', async () => {
    for (const logprobs of [false, true]) {
      const stream = client.chat.completions.stream({ model, messages, tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 0.8, seed: 5, n: 2, max_tokens: 120, logprobs });
      let firsts = 0;
      stream.on('chunk', (c) => {
        for (const ch of c.choices) for (const d of ch.delta.tool_calls ?? []) if (d.id) {
          firsts++;
          expect(d.type).toBe('function');
          expect(d.function?.name).toBeTruthy();
        }
      });
      const done = await stream.finalChatCompletion();
      expect(done.choices).toHaveLength(2);
      for (const ch of done.choices) {
        expect(ch.finish_reason).toBe('tool_calls');
        for (const call of ch.message.tool_calls!) expectValid(call);
        if (logprobs) expect(ch.logprobs!.content!.length).toBeGreaterThan(0);
      }
      expect(firsts).toBe(done.choices.reduce((a, ch) => a + ch.message.tool_calls!.length, 0));
    }
  });

  it('runs tools with zodFunction: the function gets parsed arguments, the conversation goes on with its result', async () => {
    const seen: Array<z.infer<typeof Weather>> = [];
    const runner = client.chat.completions.runTools(
      {
        model,
        messages,
        tools: [zodFunction({ name: 'get_weather', parameters: Weather, function: (args: z.infer<typeof Weather>) => (seen.push(args), 'sunny') })],
        tool_choice: 'required',
        parallel_tool_calls: false,
        temperature: 1,
        seed: 2,
        max_tokens: 200,
      },
      // The model is made to call on every turn: two round trips, the second with the first's result in its messages.
      { maxChatCompletions: 2 },
    );
    await runner.done();
    expect(seen.length).toBe(2);
    for (const args of seen) expect(Weather.parse(args)).toEqual(args);
    const requests = runner.messages.filter((m) => m.role === 'tool');
    expect(requests.map((m) => m.content)).toEqual(['sunny', 'sunny']);
  });

  it('accepts a conversation with tool calls and results, and continues it', async () => {
    const history: OpenAI.ChatCompletionMessageParam[] = [
      ...messages,
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_abc', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris", "unit": "celsius"}' } }] },
      { role: 'tool', tool_call_id: 'call_abc', content: '21 degrees and sunny' },
    ];
    const r = await client.chat.completions.create({ model, messages: history, tools, temperature: 0, max_tokens: 20 });
    expect(r.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(r.usage!.prompt_tokens).toBeGreaterThan(20);
  });

  it('returns several calls with parallel_tool_calls (only whole ones when max_tokens cuts the turn), exactly one without', async () => {
    const counts = async (parallel: boolean) =>
      Promise.all(Array.from({ length: 8 }, (_, seed) => client.chat.completions.create({ model, messages, tools, tool_choice: 'required', parallel_tool_calls: parallel, temperature: 1.2, seed, max_tokens: 200 }))).then((rs) =>
        rs.map((r) => {
          for (const call of r.choices[0]!.message.tool_calls ?? []) expectValid(call);
          return r.choices[0]!.message.tool_calls?.length ?? 0;
        }),
      );
    expect((await counts(false)).every((n) => n === 1)).toBe(true);
    expect(Math.max(...(await counts(true)))).toBeGreaterThan(1);
  });

  it('Responses: function calls, then their output through previous_response_id on the kept KV state', async () => {
    const fnTools: OpenAI.Responses.FunctionTool[] = tools.map((t) => ({ type: 'function', name: (t as OpenAI.ChatCompletionFunctionTool).function.name, parameters: (t as OpenAI.ChatCompletionFunctionTool).function.parameters ?? null, strict: false }));
    const first = await client.responses.create({ model, input: 'What is the weather in Paris?', tools: fnTools, tool_choice: 'required', parallel_tool_calls: false, temperature: 1, max_output_tokens: 120 });
    expect(first.status).toBe('completed');
    const calls = first.output.filter((o) => o.type === 'function_call');
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.call_id).toMatch(/^call_/);
    schemas[call.name]!.parse(JSON.parse(call.arguments));
    const next = await client.responses.create({ model, previous_response_id: first.id, input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny' }], tools: fnTools, tool_choice: 'none', temperature: 0, max_output_tokens: 16 });
    expect(next.output[0]!.type).toBe('message'); // free text now (tool_choice none), cut at 16 tokens or not
    expect(next.usage!.input_tokens_details.cached_tokens).toBeGreaterThan(0);
    // A result that answers no call of the conversation is refused.
    const err = await client.responses.create({ model, previous_response_id: first.id, input: [{ type: 'function_call_output', call_id: 'call_nope', output: 'x' }], max_output_tokens: 4 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('Responses: streams a call as output_item.added, function_call_arguments deltas and done events', async () => {
    const fnTools: OpenAI.Responses.FunctionTool[] = [{ type: 'function', name: 'get_time', parameters: z.toJSONSchema(Time) as Record<string, unknown>, strict: true }];
    const stream = client.responses.stream({ model, input: 'What time is it?', tools: fnTools, tool_choice: 'required', parallel_tool_calls: false, temperature: 1, max_output_tokens: 120 });
    const types: string[] = [];
    let args = '';
    stream.on('event', (e) => {
      types.push(e.type);
      if (e.type === 'response.function_call_arguments.delta') args += e.delta;
    });
    const done = await stream.finalResponse();
    const call = done.output.find((o) => o.type === 'function_call')!;
    expect(call.type === 'function_call' && call.arguments).toBe(args);
    Time.parse(JSON.parse(args));
    expect(types.filter((t) => t !== 'response.function_call_arguments.delta')).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.function_call_arguments.done', 'response.output_item.done', 'response.completed']);
  });

  it('refuses what cannot be honoured, naming the field', async () => {
    const refused = async (body: Record<string, unknown>, param: string) => {
      const err = await client.chat.completions.create({ model, messages, max_tokens: 5, ...body } as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(param);
    };
    await refused({ tools, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice');
    await refused({ tools: [tools[0], tools[0]] }, 'tools[1].function.name');
    await refused({ tool_choice: 'required' }, 'tool_choice');
    await refused({ messages: [...messages, { role: 'tool', tool_call_id: 'call_missing', content: 'x' }] }, 'messages[1].tool_call_id');
    await refused({ tools: [{ type: 'function', function: { name: 'bad', parameters: { type: 'object', properties: { a: { $ref: '#/$defs/missing' } } } } }], tool_choice: 'required' }, 'tools');
    await refused({ tools, response_format: { type: 'json_object' } }, 'response_format');
  });
});
