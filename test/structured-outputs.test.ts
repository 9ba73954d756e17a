/**
 * Structured outputs end to end on stories260K, a model that knows nothing of
 * JSON: the official openai package's parse helpers with zod schemas, streams,
 * forks, Responses with stored follow-ups, vLLM's structured_outputs, the 400s,
 * and preemption in the middle of a constrained generation.
 */
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Engine } from '../src/engine/index.ts';
import { compactJson } from '../src/engine/grammar/source.ts';
import { expectNothingHeld, servedEngine, type TestServer } from './gateway-helpers.ts';
import { haveStories, SKIP_STORIES, storiesModelDir, testEngine } from './helpers.ts';

const Pet = z.object({
  name: z.string().max(12),
  kind: z.enum(['cat', 'dog', 'bird']),
  age: z.number().int().min(0).max(20),
  friendly: z.boolean(),
  toys: z.array(z.enum(['ball', 'rope', 'bell'])).max(3),
  owner: z.object({ name: z.string().max(10), nick: z.string().max(6).nullable() }),
});

const messages = [{ role: 'user' as const, content: 'Tell me about a pet.' }];

let engine: Engine;
let server: TestServer;
let client: OpenAI;
let model: string;

describe.skipIf(!haveStories)(`structured outputs on stories260K ${SKIP_STORIES}`, () => {
  const served = servedEngine(storiesModelDir);
  beforeAll(() => ({ engine, server, client, model } = served));
  afterEach(() => expectNothingHeld(served.engine));

  it('chat.completions.parse with a zod schema: 20 seeds at temperature 1 all validate', async () => {
    const runs = await Promise.all(
      Array.from({ length: 20 }, (_, seed) =>
        client.chat.completions.parse({ model, messages, response_format: zodResponseFormat(Pet, 'pet'), temperature: 1, seed, max_tokens: 300 }),
      ),
    );
    const texts = new Set<string>();
    for (const r of runs) {
      const choice = r.choices[0]!;
      expect(choice.finish_reason).toBe('stop');
      expect(Pet.parse(choice.message.parsed)).toEqual(choice.message.parsed);
      expect(choice.message.content, 'one line, ", " and ": " between items').toBe(compactJson(JSON.parse(choice.message.content!)));
      texts.add(choice.message.content!);
    }
    expect(texts.size).toBeGreaterThan(10); // sampled, not one forced answer
  });

  it('streams deltas that join into valid JSON, also with logprobs over the allowed tokens', async () => {
    for (const logprobs of [false, true]) {
      const stream = client.chat.completions.stream({ model, messages, response_format: zodResponseFormat(Pet, 'pet'), temperature: 0.8, seed: 3, max_tokens: 300, logprobs, ...(logprobs ? { top_logprobs: 3 } : {}) });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      const final = await stream.finalChatCompletion();
      expect(Pet.parse(JSON.parse(text))).toBeTruthy();
      expect(final.choices[0]!.message.parsed).toEqual(JSON.parse(text));
      if (logprobs) {
        const lps = final.choices[0]!.logprobs!.content!;
        expect(lps.map((l) => l.token).join('')).toBe(text + '</s>'); // the end token is reported too
        for (const l of lps) {
          expect(l.logprob).toBeLessThanOrEqual(0);
          // Alternatives come from the allowed tokens: their probabilities sum to at most 1.
          expect(l.top_logprobs.reduce((s, t) => s + Math.exp(t.logprob), 0)).toBeLessThanOrEqual(1 + 1e-4);
        }
        // Where the grammar allows one token only (a closing quote after 12 characters, a fixed key), it is certain.
        expect(lps.some((l) => l.logprob === 0)).toBe(true);
      }
    }
  });

  it('n: 3 forks each validate; greedy is repeatable', async () => {
    const r = await client.chat.completions.parse({ model, messages, response_format: zodResponseFormat(Pet, 'pet'), n: 3, temperature: 1, seed: 11, max_tokens: 300 });
    expect(r.choices).toHaveLength(3);
    for (const c of r.choices) expect(Pet.parse(c.message.parsed)).toBeTruthy();
    const greedy = async () => (await client.chat.completions.create({ model, messages, response_format: zodResponseFormat(Pet, 'pet'), temperature: 0, max_tokens: 300 })).choices[0]!.message.content;
    const a = await greedy();
    expect(Pet.parse(JSON.parse(a!))).toBeTruthy();
    expect(await greedy()).toBe(a);
  });

  it('json_object output parses as an object; max_tokens cuts it off with finish_reason length', async () => {
    // Left alone this model writes a story inside the first string; biased towards closing quotes and braces
    // (the grammar decides where they may go) it finishes objects.
    const t = engine.model.tokenizer;
    const quote = t.encode('x"', { addBos: false }).at(-1)!;
    const brace = t.encode('x}', { addBos: false }).at(-1)!;
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({ model, messages, response_format: { type: 'json_object' }, temperature: 0.7, seed, max_tokens: 400, logit_bias: { [quote]: 8, [brace]: 30 } });
      const c = r.choices[0]!;
      expect(c.finish_reason).toBe('stop');
      const parsed = JSON.parse(c.message.content!);
      expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)).toBe(true);
    }
    const story = await client.chat.completions.create({ model, messages, response_format: { type: 'json_object' }, temperature: 0.7, seed: 1, max_tokens: 60 });
    expect(story.choices[0]!.finish_reason).toBe('length');
    expect(story.choices[0]!.message.content!.startsWith('{"')).toBe(true);
    const cut = await client.chat.completions.create({ model, messages, response_format: zodResponseFormat(Pet, 'pet'), temperature: 0, max_tokens: 5 });
    expect(cut.choices[0]!.finish_reason).toBe('length');
    expect('{"name": "'.startsWith(cut.choices[0]!.message.content!.slice(0, 10))).toBe(true);
    expect(() => JSON.parse(cut.choices[0]!.message.content!)).toThrow();
  });

  it('responses.parse with zodTextFormat validates, streamed and stored, and a follow-up keeps the format', async () => {
    const first = await client.responses.parse({ model, input: 'A pet, please.', text: { format: zodTextFormat(Pet, 'pet') }, temperature: 1, max_output_tokens: 300 });
    expect(first.status).toBe('completed');
    expect(Pet.parse(first.output_parsed)).toBeTruthy();
    expect(first.text!.format).toMatchObject({ type: 'json_schema', name: 'pet' });
    const follow = await client.responses.parse({ model, previous_response_id: first.id, input: 'Another one.', text: { format: zodTextFormat(Pet, 'pet') }, temperature: 1, max_output_tokens: 300 });
    expect(Pet.parse(follow.output_parsed)).toBeTruthy();
    expect((await client.responses.retrieve(follow.id)).output_text).toBe(follow.output_text);
    const stream = client.responses.stream({ model, input: 'A pet.', text: { format: zodTextFormat(Pet, 'pet') }, temperature: 0.9, max_output_tokens: 300, store: false });
    let text = '';
    for await (const e of stream) if (e.type === 'response.output_text.delta') text += e.delta;
    const final = await stream.finalResponse();
    expect(Pet.parse(JSON.parse(text))).toEqual(final.output_parsed);
    await client.responses.delete(follow.id);
    await client.responses.delete(first.id);
  });

  it("serves vLLM's structured_outputs on completions and chat: choice, regex, grammar, json", async () => {
    const post = (path: string, body: object) => fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, ...body }) }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }));
    const choice = await post('/v1/completions', { prompt: 'The cat was', max_tokens: 20, n: 4, temperature: 1, seed: 2, structured_outputs: { choice: ['happy', 'sad', 'sleepy'] } });
    expect(choice.status).toBe(200);
    for (const c of choice.json.choices) expect(['happy', 'sad', 'sleepy']).toContain(c.text);
    const regex = await post('/v1/completions', { prompt: 'Call', max_tokens: 30, temperature: 1, seed: 5, structured_outputs: { regex: '[0-9]{3}-[0-9]{4}' } });
    expect(regex.json.choices[0].text).toMatch(/^[0-9]{3}-[0-9]{4}$/);
    const grammar = await post('/v1/chat/completions', { messages, max_tokens: 60, temperature: 1, seed: 1, structured_outputs: { grammar: 'root ::= "(" word (", " word){0,2} ")"\nword ::= [a-z]{1,6}' } });
    expect(grammar.json.choices[0].message.content).toMatch(/^\([a-z]{1,6}(, [a-z]{1,6}){0,2}\)$/);
    const json = await post('/v1/chat/completions', { messages, max_tokens: 100, temperature: 0, structured_outputs: { json: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, minItems: 2, maxItems: 4 } } });
    const arr = JSON.parse(json.json.choices[0].message.content);
    expect(arr.length).toBeGreaterThanOrEqual(2);
    const both = await post('/v1/chat/completions', { messages, response_format: { type: 'json_object' }, structured_outputs: { regex: 'a' } });
    expect(both.status).toBe(400);
    expect(both.json.error.param).toBe('structured_outputs');
  });

  it('answers a schema or regex the grammar engine cannot honour with a 400 naming the field', async () => {
    const bad = await client.chat.completions
      .create({ model, messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { $ref: '#/$defs/nowhere' } } } } } })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('response_format');
    expect((bad as Error).message).toMatch(/nowhere/);
    const regex = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'x', structured_outputs: { regex: '[a-' } }),
    });
    expect(regex.status).toBe(400);
    const body = (await regex.json()) as { error: { param: string; message: string; type: string } };
    expect(body.error).toMatchObject({ param: 'structured_outputs', type: 'invalid_request_error' });
    expect(body.error.message).toMatch(/Invalid structured_outputs: .*/);
    const responses = await client.responses
      .create({ model, input: 'x', text: { format: { type: 'json_schema', name: 'x', schema: { type: 'string', pattern: '((' } } } })
      .catch((e: unknown) => e);
    expect(responses).toBeInstanceOf(OpenAI.BadRequestError);
    expect((responses as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('text.format');
  });
});

describe.skipIf(!haveStories)(`constrained generation under preemption ${SKIP_STORIES}`, () => {
  it('resumes to the same output as without preemption', async () => {
    const schema = JSON.stringify(z.toJSONSchema(Pet));
    const run = async (numPages: number, parallel: number) => {
      const e = await testEngine(storiesModelDir(), { numPages, pageSize: 16, maxTokensPerStep: 64 });
      const grammar = await e.grammars.compile({ type: 'json_schema', schema });
      const outs = await Promise.all(
        Array.from({ length: parallel }, async (_, i) => {
          const ctx = e.createContext();
          e.append(ctx, e.model.tokenizer.encode(`Once upon a time, pet number ${i} was`));
          const r = await e.generate(ctx, { grammar, sampling: { temperature: 0.9, seed: i }, maxTokens: 160 }).result;
          e.release(ctx);
          return r;
        }),
      );
      return { outs, preemptions: e.stats().preemptions, matchers: e.grammars.stats().matchers };
    };
    const roomy = await run(256, 6);
    const tight = await run(12, 6);
    expect(roomy.preemptions).toBe(0);
    expect(tight.preemptions).toBeGreaterThan(0);
    expect(tight.outs.map((r) => r.tokens)).toEqual(roomy.outs.map((r) => r.tokens));
    for (const r of tight.outs) {
      expect(r.finishReason).toBe('stop');
      expect(Pet.parse(JSON.parse(r.text))).toBeTruthy();
    }
    expect(tight.matchers).toBe(0);
  });
});
