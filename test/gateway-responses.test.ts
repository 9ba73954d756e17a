/**
 * The Responses API end to end with the official openai package: stored
 * responses in SQLite, the event stream, and previous_response_id follow-ups
 * that give the same answer from the KV snapshot and after its eviction.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type Engine } from '../src/engine/index.ts';
import { startGateway, type TestServer } from './gateway-helpers.ts';
import { randomModelDir } from './helpers.ts';

let engine: Engine;
let server: TestServer;
let client: OpenAI;
let model: string;

/** The client's key ("none") is the default tenant's; another tenant's key sees none of its responses. */
const KEYS = `
[[keys]]
key = "none"
tenant = "default"
[[keys]]
key = "sk-other"
tenant = "other"
`;

beforeAll(async () => {
  engine = await startEngine(randomModelDir(), { threads: 1, numPages: 512, pageSize: 16 });
  model = engine.model.name;
  server = await startGateway([engine], { extra: KEYS });
  client = server.client();
});

/** The text an output_text part's logprobs spell, from their bytes. */
const spelled = (lps: Array<{ bytes: number[] }>) => Buffer.from(lps.flatMap((l) => l.bytes)).toString('utf8');

afterAll(async () => {
  await server?.close();
  expect(engine.numContexts, 'contexts left behind by the gateway').toBe(0);
  await engine?.close();
});

describe('responses', () => {
  it('creates, retrieves, lists input items of and deletes a stored response', async () => {
    const r = await client.responses.create({ model, input: 'Tell me a story.', max_output_tokens: 8, temperature: 0, metadata: { topic: 'story' } });
    expect(r.id).toMatch(/^resp_/);
    expect(r.object).toBe('response');
    expect(r.status).toBe('incomplete');
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(r.output_text.length).toBeGreaterThan(0);
    expect(r.usage!.output_tokens).toBe(8);
    expect(r.metadata).toEqual({ topic: 'story' });
    const got = await client.responses.retrieve(r.id);
    expect(got.output).toEqual(r.output);
    const items = await client.responses.inputItems.list(r.id);
    expect(items.data).toHaveLength(1);
    expect(items.data[0]).toMatchObject({ type: 'message', role: 'user' });
    await client.responses.delete(r.id);
    await expect(client.responses.retrieve(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect(engine.listSnapshots('default')).not.toContain(`response:${r.id}`);
  });

  it('does not keep a response with store: false', async () => {
    const r = await client.responses.create({ model, input: 'Hi', max_output_tokens: 3, store: false });
    await expect(client.responses.retrieve(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('streams the Responses event sequence and ends with the stored response', async () => {
    const stream = client.responses.stream({ model, input: 'Once upon a time', max_output_tokens: 6, temperature: 0, instructions: 'Tell a story.' });
    const types: string[] = [];
    const seqs: number[] = [];
    let deltas = '';
    for await (const e of stream) {
      types.push(e.type);
      seqs.push(e.sequence_number);
      if (e.type === 'response.output_text.delta') deltas += e.delta;
    }
    const final = await stream.finalResponse();
    const distinct = types.filter((t, i) => t !== types[i - 1]);
    expect(distinct).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.incomplete',
    ]);
    expect(seqs).toEqual(seqs.map((_, i) => i));
    expect(final.output_text).toBe(deltas);
    expect((await client.responses.retrieve(final.id)).output_text).toBe(deltas);
  });

  it('continues a conversation with previous_response_id: the same answer from the snapshot and after it was evicted', async () => {
    const first = await client.responses.create({ model, input: 'My name is Lily.', max_output_tokens: 6, temperature: 0 });
    const params = { model, previous_response_id: first.id, input: 'What is my name?', max_output_tokens: 10, temperature: 0 };
    const fromSnapshot = await client.responses.create(params);
    expect(fromSnapshot.previous_response_id).toBe(first.id);
    // The snapshot held the whole first turn: only the new turn was computed.
    expect(fromSnapshot.usage!.input_tokens_details.cached_tokens).toBeGreaterThanOrEqual(first.usage!.total_tokens - 1);
    expect(engine.deleteSnapshot(`response:${first.id}`, 'default')).toBe(true);
    const rebuilt = await client.responses.create(params);
    expect(rebuilt.output_text).toBe(fromSnapshot.output_text);
    expect(rebuilt.usage!.input_tokens).toBe(fromSnapshot.usage!.input_tokens);
    // A third turn on top of the second works the same way.
    const third = await client.responses.create({ model, previous_response_id: fromSnapshot.id, input: 'Thanks.', max_output_tokens: 4, temperature: 0 });
    expect(third.usage!.input_tokens).toBeGreaterThan(fromSnapshot.usage!.total_tokens);
  });

  it('accepts function_call and function_call_output items', async () => {
    const r = await client.responses.create({
      model,
      max_output_tokens: 3,
      temperature: 0, // sampled, the random model could end its turn within 3 tokens
      input: [
        { role: 'user', content: 'Weather in Paris?' },
        { type: 'function_call', call_id: 'call_1', name: 'weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call_output', call_id: 'call_1', output: 'sunny' },
      ],
    });
    expect(r.status).toBe('incomplete');
    const items = await client.responses.inputItems.list(r.id, { order: 'asc' });
    expect(items.data.map((i) => i.type)).toEqual(['message', 'function_call', 'function_call_output']);
  });

  it('puts a stored item in place of an item_reference: the same answer as the item inline; an unknown or foreign id is a 400 naming it', async () => {
    const first = await client.responses.create({ model, input: 'My name is Lily.', max_output_tokens: 6, temperature: 0 });
    const answer = first.output[0]!;
    const asked = (await client.responses.inputItems.list(first.id)).data[0]!;
    expect(answer.id).toMatch(/^msg_/);
    const question = { role: 'user' as const, content: 'What is my name?' };
    // As the AI SDK sends a conversation (store on): earlier items by reference, `type` optional.
    const byReference = await client.responses.create({
      model,
      input: [{ type: 'item_reference', id: asked.id }, { id: answer.id! } as OpenAI.Responses.ResponseInputItem.ItemReference, question],
      max_output_tokens: 8,
      temperature: 0,
    });
    const inline = await client.responses.create({
      model,
      input: [{ role: 'user', content: 'My name is Lily.' }, { role: 'assistant', content: first.output_text }, question],
      max_output_tokens: 8,
      temperature: 0,
      store: false,
    });
    expect(byReference.output_text.length).toBeGreaterThan(0);
    expect(byReference.output_text).toBe(inline.output_text);
    expect(byReference.usage!.input_tokens).toBe(inline.usage!.input_tokens);
    // Its input items are the items referred to, then the new one.
    const items = (await client.responses.inputItems.list(byReference.id, { order: 'asc' })).data;
    expect(items.map((i) => i.id)).toEqual([asked.id, answer.id, expect.stringMatching(/^msg_/)]);
    expect(items[1]).toMatchObject({ role: 'assistant', content: [{ type: 'output_text', text: first.output_text }] });

    const unknown = await client.responses.create({ model, input: [{ type: 'item_reference', id: 'msg_nope' }, question] }).catch((e) => e);
    expect(unknown).toBeInstanceOf(OpenAI.BadRequestError);
    expect(unknown.param).toBe('input');
    expect(unknown.message).toContain("'msg_nope'");
    const foreign = await server.client('sk-other').responses.create({ model, input: [{ type: 'item_reference', id: answer.id! }, question] }).catch((e) => e);
    expect(foreign).toBeInstanceOf(OpenAI.BadRequestError);
    expect(foreign.param).toBe('input');
    expect(foreign.message).toContain(`'${answer.id}'`);
  });

  it('accepts prompt_cache_key, prompt_cache_retention, safety_identifier, max_tool_calls, stream_options and includes with nothing to add: the same output, the fields echoed', async () => {
    const params = { model, input: 'Once upon a time', max_output_tokens: 6, temperature: 0 };
    const plain = await client.responses.create(params);
    const extras = {
      prompt_cache_key: 'story-app',
      prompt_cache_retention: '24h' as const,
      safety_identifier: 'user-1234',
      max_tool_calls: 2,
      include: ['reasoning.encrypted_content' as const],
    };
    const r = await client.responses.create({ ...params, ...extras });
    expect(r.output_text).toBe(plain.output_text);
    expect(r).toMatchObject({ prompt_cache_key: 'story-app', prompt_cache_retention: '24h', safety_identifier: 'user-1234', max_tool_calls: 2 });
    expect(plain).toMatchObject({ prompt_cache_key: null, safety_identifier: null, max_tool_calls: null, top_logprobs: null });
    for (const include_obfuscation of [true, false]) {
      const stream = await client.responses.create({ ...params, ...extras, stream: true, stream_options: { include_obfuscation } });
      let text = '';
      for await (const e of stream) if (e.type === 'response.output_text.delta') text += e.delta;
      expect(text).toBe(plain.output_text);
    }
  });

  it('returns logprobs on the output_text parts with include message.output_text.logprobs, streamed too', async () => {
    const params = { model, input: 'Once upon a time', max_output_tokens: 6, temperature: 0, top_logprobs: 3, include: ['message.output_text.logprobs' as const] };
    const r = await client.responses.create(params);
    const part = (r.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText;
    expect(part.logprobs).toHaveLength(r.usage!.output_tokens);
    expect(spelled(part.logprobs!)).toBe(r.output_text);
    for (const l of part.logprobs!) {
      expect(l.logprob).toBeLessThanOrEqual(0);
      expect(l.top_logprobs).toHaveLength(3);
      // Greedy: the token is the most likely one, and the alternatives come most likely first.
      expect(l.top_logprobs[0]!.token).toBe(l.token);
      expect(l.top_logprobs[0]!.logprob).toBeCloseTo(l.logprob, 5);
      expect(l.top_logprobs.map((t) => t.logprob)).toEqual([...l.top_logprobs.map((t) => t.logprob)].sort((a, b) => b - a));
    }
    expect(r.top_logprobs).toBe(3);

    const stream = await client.responses.create({ ...params, stream: true });
    const deltas: Array<{ token: string; logprob: number }> = [];
    let done: Array<{ token: string; logprob: number }> = [];
    let final: OpenAI.Responses.Response | null = null;
    for await (const e of stream) {
      if (e.type === 'response.output_text.delta') deltas.push(...e.logprobs);
      if (e.type === 'response.output_text.done') done = e.logprobs;
      if (e.type === 'response.incomplete') final = e.response;
    }
    const tokens = part.logprobs!.map((l) => l.token);
    expect(deltas.map((l) => l.token)).toEqual(tokens);
    expect(done.map((l) => l.token)).toEqual(tokens);
    deltas.forEach((l, i) => expect(l.logprob).toBeCloseTo(part.logprobs![i]!.logprob, 4));
    expect((final!.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0]).toMatchObject({ text: r.output_text, logprobs: expect.any(Array) });

    // top_logprobs alone asks for none; the include alone gives no alternatives.
    const without = await client.responses.create({ ...params, include: [] });
    expect((without.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0]).toMatchObject({ logprobs: [] });
    const bare = await client.responses.create({ ...params, top_logprobs: undefined });
    const bareLps = ((bare.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText).logprobs!;
    expect(bareLps.map((l) => l.token)).toEqual(tokens);
    for (const l of bareLps) expect(l.top_logprobs).toEqual([]);
  });

  it('puts the logprobs of the text a generation with tools makes on its message item', async () => {
    const tools: OpenAI.Responses.FunctionTool[] = [{ type: 'function', name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: false }];
    const params = { model, input: 'Weather in Paris?', tools, max_output_tokens: 8, temperature: 0, include: ['message.output_text.logprobs' as const] };
    for (const stream of [false, true]) {
      const r = stream ? await client.responses.stream(params).finalResponse() : await client.responses.create(params);
      const messages = r.output.flatMap((o) => (o.type === 'message' ? [o as OpenAI.Responses.ResponseOutputMessage] : []));
      expect(messages.length).toBeGreaterThan(0);
      for (const m of messages) {
        const part = m.content[0] as OpenAI.Responses.ResponseOutputText;
        expect(part.logprobs!.length).toBeGreaterThan(0);
        expect(spelled(part.logprobs!)).toBe(part.text);
      }
    }
  });

  it('refuses an unknown previous_response_id, tools of other types, and cancelling a finished response', async () => {
    const prev = await client.responses.create({ model, input: 'x', previous_response_id: 'resp_nope' }).catch((e) => e);
    expect(prev).toBeInstanceOf(OpenAI.BadRequestError);
    expect(prev.param).toBe('previous_response_id');
    const tools = await client.responses.create({ model, input: 'x', tools: [{ type: 'web_search' }] }).catch((e) => e);
    expect(tools).toBeInstanceOf(OpenAI.BadRequestError);
    expect(tools.param).toMatch(/^tools/);
    const truncation = await client.responses.create({ model, input: 'x', truncation: 'auto' }).catch((e) => e);
    expect(truncation.param).toBe('truncation');
    const refused = await client.responses.create({ model, input: 'word '.repeat(3000) }).catch((e) => e);
    expect(refused.code).toBe('context_length_exceeded');
    const done = await client.responses.create({ model, input: 'x', max_output_tokens: 2 });
    await expect(client.responses.cancel(done.id)).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });
});
