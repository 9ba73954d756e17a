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

beforeAll(async () => {
  engine = await startEngine(randomModelDir(), { threads: 1, numPages: 512, pageSize: 16 });
  model = engine.model.name;
  server = await startGateway([engine]);
  client = server.client();
});

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
