/**
 * Real clients against a real listening server, used as their users would:
 * the Vercel AI SDK 7 (and 6) with `@ai-sdk/openai`, whose default model is
 * the Responses API with `store` on (earlier turns go back as
 * `item_reference` items), and with `@ai-sdk/openai-compatible` (Chat
 * Completions); LangChain's ChatOpenAI on Chat Completions and on the
 * Responses API. Three-turn conversations streamed and not, stop, seed,
 * usage, abort and errors. Every request is recorded on its way out, so a
 * test sees what the client sent as well as what it got.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { AIMessage, AIMessageChunk, HumanMessage, type BaseMessage } from '@langchain/core/messages';
import { ChatOpenAI } from '@langchain/openai';
import { APICallError, generateText, streamText, type ModelMessage } from 'ai';
import * as ai6 from 'ai6';
import { createOpenAI as createOpenAI6 } from 'ai6-openai';
import OpenAI from 'openai';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectNothingHeld, servedEngine } from './gateway-helpers.ts';
import { randomModelDir } from './helpers.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A fetch that keeps the JSON body of every request it sends. */
function recorder(): { bodies: Json[]; fetch: typeof fetch } {
  const bodies: Json[] = [];
  return {
    bodies,
    fetch: (input, init) => {
      if (typeof init?.body === 'string') bodies.push(JSON.parse(init.body) as Json);
      return fetch(input, init);
    },
  };
}

const TURNS = ['My name is Lily and I like cats.', 'What is my name?', 'And what do I like?'];

/** The text of an item's content (a string, or parts with text). */
const textOf = (content: unknown): string => (typeof content === 'string' ? content : (content as Array<{ text?: string }>).map((p) => p.text ?? '').join(''));

const served = servedEngine(() => randomModelDir());
let model: string;
let baseURL: string;
let client: OpenAI;
beforeAll(() => {
  model = served.model;
  baseURL = `${served.server.url}/v1`;
  client = served.client;
});
afterEach(() => expectNothingHeld(served.engine));

/**
 * What the server made of an AI SDK conversation on the Responses API with
 * store on: each later turn sent the earlier answers as item_reference items,
 * and the stored input of its response holds those answers' text.
 */
async function expectReferencedTurns(bodies: Json[], responseIds: string[], texts: string[]): Promise<void> {
  const posts = bodies.filter((b) => 'input' in b);
  expect(posts).toHaveLength(TURNS.length);
  for (let turn = 1; turn < TURNS.length; turn++) {
    const earlier = await Promise.all(responseIds.slice(0, turn).map((id) => client.responses.retrieve(id)));
    const references = (posts[turn]!.input as Json[]).filter((i) => i.type === 'item_reference').map((i) => i.id as string);
    expect(references).toEqual(earlier.map((r) => r.output[0]!.id));
    const stored = (await client.responses.inputItems.list(responseIds[turn]!, { order: 'asc' })).data as Json[];
    const answers = stored.filter((i) => i.role === 'assistant').map((i) => textOf(i.content));
    expect(answers).toEqual(texts.slice(0, turn));
    expect(stored.filter((i) => i.role === 'user').map((i) => textOf(i.content))).toEqual(TURNS.slice(0, turn + 1));
  }
}

describe('Vercel AI SDK 7, @ai-sdk/openai (the Responses API, store on)', () => {
  for (const streamed of [false, true]) {
    it(`holds a three-turn conversation${streamed ? ', streamed' : ''}: earlier answers go back as item references the server resolves`, async () => {
      const rec = recorder();
      const openai = createOpenAI({ baseURL, apiKey: 'none', fetch: rec.fetch });
      const messages: ModelMessage[] = [];
      const texts: string[] = [];
      const ids: string[] = [];
      const inputTokens: number[] = [];
      for (const prompt of TURNS) {
        messages.push({ role: 'user', content: prompt });
        const options = { model: openai(model), messages, maxOutputTokens: 8, temperature: 0, maxRetries: 0 };
        const r = streamed ? streamText(options) : await generateText(options);
        const [text, response, usage] = await Promise.all([r.text, r.response, r.usage]);
        expect(text.length).toBeGreaterThan(0);
        expect(usage.outputTokens).toBe(8);
        texts.push(text);
        ids.push(response.id);
        inputTokens.push(usage.inputTokens!);
        messages.push(...response.messages);
      }
      // Each turn's prompt holds the whole conversation so far.
      expect(inputTokens[1]).toBeGreaterThan(inputTokens[0]! + 8);
      expect(inputTokens[2]).toBeGreaterThan(inputTokens[1]! + 8);
      await expectReferencedTurns(rec.bodies, ids, texts);
      // The server stored what the client showed.
      for (const [i, id] of ids.entries()) expect((await client.responses.retrieve(id)).output_text).toBe(texts[i]);
    });
  }

  it('asks for logprobs, prompt cache key and safety identifier as the provider options name them, and gets the logprobs', async () => {
    const rec = recorder();
    const openai = createOpenAI({ baseURL, apiKey: 'none', fetch: rec.fetch });
    const r = await generateText({
      model: openai(model),
      prompt: 'Once upon a time',
      maxOutputTokens: 6,
      temperature: 0,
      maxRetries: 0,
      providerOptions: { openai: { logprobs: 2, promptCacheKey: 'stories', safetyIdentifier: 'user-1', maxToolCalls: 3 } },
    });
    expect(rec.bodies[0]).toMatchObject({ top_logprobs: 2, include: ['message.output_text.logprobs'], prompt_cache_key: 'stories', safety_identifier: 'user-1', max_tool_calls: 3 });
    const logprobs = (r.providerMetadata?.openai?.logprobs as Array<Array<{ token: string; top_logprobs: unknown[] }>>).flat();
    expect(logprobs).toHaveLength(6);
    for (const l of logprobs) expect(l.top_logprobs).toHaveLength(2);
  });

  it('aborts a stream mid-way: the server cancels the generation, frees its pages and stores the response as cancelled', async () => {
    const openai = createOpenAI({ baseURL, apiKey: 'none' });
    const host = served.server.serving.gateway.runtime().host;
    const cancelledBefore = host.stats().cancelled;
    const abort = new AbortController();
    const r = streamText({ model: openai(model), prompt: 'Tell me a long story.', maxOutputTokens: 1500, temperature: 0, maxRetries: 0, abortSignal: abort.signal, includeRawChunks: true });
    let id = '';
    let text = '';
    const aborted = (async () => {
      for await (const part of r.fullStream) {
        if (part.type === 'text-delta') text += part.text;
        // The response's id comes in the first event of the stream, response.created.
        if (part.type === 'raw' && (part.rawValue as Json).type === 'response.created') id = (part.rawValue as Json).response.id;
        if (text.length > 0) abort.abort();
      }
    })();
    await aborted.catch(() => {});
    expect(text.length).toBeGreaterThan(0);
    expect(id).toMatch(/^resp_/);
    const t0 = performance.now();
    while (host.stats().cancelled === cancelledBefore && performance.now() - t0 < 5000) await new Promise((res) => setTimeout(res, 5));
    expect(host.stats().cancelled).toBe(cancelledBefore + 1);
    await expectNothingHeld(served.engine);
    const stored = await client.responses.retrieve(id);
    expect(stored.status).toBe('cancelled');
  });

  it('surfaces an unknown model as an APICallError with the server status and message', async () => {
    const openai = createOpenAI({ baseURL, apiKey: 'none' });
    const err = await generateText({ model: openai('no-such-model'), prompt: 'Hi', maxRetries: 0 }).catch((e: unknown) => e);
    expect(APICallError.isInstance(err)).toBe(true);
    expect((err as APICallError).statusCode).toBe(404);
    expect((err as APICallError).message).toContain('no-such-model');
  });
});

describe('Vercel AI SDK 6, @ai-sdk/openai 3 (the Responses API, store on)', () => {
  for (const streamed of [false, true]) {
    it(`holds a three-turn conversation${streamed ? ', streamed' : ''}`, async () => {
      const rec = recorder();
      const openai = createOpenAI6({ baseURL, apiKey: 'none', fetch: rec.fetch });
      const messages: ai6.ModelMessage[] = [];
      const texts: string[] = [];
      const ids: string[] = [];
      for (const prompt of TURNS) {
        messages.push({ role: 'user', content: prompt });
        const options = { model: openai(model), messages, maxOutputTokens: 8, temperature: 0, maxRetries: 0 };
        const r = streamed ? ai6.streamText(options) : await ai6.generateText(options);
        const [text, response] = await Promise.all([r.text, r.response]);
        expect(text.length).toBeGreaterThan(0);
        texts.push(text);
        ids.push(response.id);
        messages.push(...response.messages);
      }
      await expectReferencedTurns(rec.bodies, ids, texts);
    });
  }
});

describe('Vercel AI SDK 7, @ai-sdk/openai-compatible (Chat Completions)', () => {
  const provider = (fetcher?: typeof fetch) => createOpenAICompatible({ name: 'pie', baseURL, apiKey: 'none', includeUsage: true, ...(fetcher ? { fetch: fetcher } : {}) });

  for (const streamed of [false, true]) {
    it(`holds a three-turn conversation${streamed ? ', streamed' : ''}, with usage`, async () => {
      const rec = recorder();
      const pie = provider(rec.fetch);
      const messages: ModelMessage[] = [];
      const texts: string[] = [];
      for (const prompt of TURNS) {
        messages.push({ role: 'user', content: prompt });
        const options = { model: pie(model), messages, maxOutputTokens: 8, temperature: 0, maxRetries: 0 };
        const r = streamed ? streamText(options) : await generateText(options);
        const [text, response, usage] = await Promise.all([r.text, r.response, r.usage]);
        expect(text.length).toBeGreaterThan(0);
        expect(usage.outputTokens).toBe(8);
        expect(usage.totalTokens).toBe(usage.inputTokens! + 8);
        texts.push(text);
        messages.push(...response.messages);
      }
      const last = rec.bodies.at(-1)!.messages as Json[];
      expect(last.filter((m) => m.role === 'assistant').map((m) => textOf(m.content))).toEqual(texts.slice(0, 2));
      expect(last.filter((m) => m.role === 'user').map((m) => textOf(m.content))).toEqual(TURNS);
    });
  }

  it('stops at a stop sequence, and repeats itself with the same seed', async () => {
    const pie = provider();
    const base = { model: pie(model), prompt: 'Once upon a time', maxOutputTokens: 16, maxRetries: 0 };
    const full = (await generateText({ ...base, temperature: 0 })).text;
    const stop = stopIn(full);
    const stopped = await generateText({ ...base, temperature: 0, stopSequences: [stop] });
    expect(stopped.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(stopped.finishReason).toBe('stop');

    const seeded = (seed: number) => generateText({ ...base, temperature: 1, seed }).then((r) => r.text);
    const [a, b, others] = await Promise.all([seeded(7), seeded(7), Promise.all([8, 9, 10].map(seeded))]);
    expect(a.length).toBeGreaterThan(0);
    expect(b).toBe(a);
    expect(others.some((t) => t !== a)).toBe(true);
  });

  it('surfaces an unknown model as an APICallError', async () => {
    const err = await generateText({ model: provider()('no-such-model'), prompt: 'Hi', maxRetries: 0 }).catch((e: unknown) => e);
    expect(APICallError.isInstance(err)).toBe(true);
    expect((err as APICallError).statusCode).toBe(404);
  });
});

/** A stop sequence that occurs in `text` after its start (two characters, none of them a replacement character). */
function stopIn(text: string): string {
  for (let i = Math.floor(text.length / 2); i > 0; i--) {
    const s = text.slice(i, i + 2);
    if (s.length === 2 && !s.includes('\uFFFD') && s.trim() === s && text.indexOf(s) > 0) return s;
  }
  throw new Error(`no stop sequence to pick in ${JSON.stringify(text)}`);
}

describe('LangChain ChatOpenAI', () => {
  const chat = (fetcher: typeof fetch, extra: ConstructorParameters<typeof ChatOpenAI>[0] = {}) =>
    new ChatOpenAI({ model, apiKey: 'none', configuration: { baseURL, fetch: fetcher }, maxTokens: 8, temperature: 0, maxRetries: 0, ...extra });

  /** Three turns; the model's answers as it returned them. */
  async function converse(llm: ChatOpenAI, streamed: boolean): Promise<AIMessage[]> {
    const history: BaseMessage[] = [];
    const answers: AIMessage[] = [];
    for (const prompt of TURNS) {
      history.push(new HumanMessage(prompt));
      let answer: AIMessage;
      if (streamed) {
        let sum: AIMessageChunk | undefined;
        for await (const chunk of await llm.stream(history)) sum = sum ? sum.concat(chunk) : chunk;
        answer = sum!;
      } else answer = await llm.invoke(history);
      expect(answer.text.length).toBeGreaterThan(0);
      expect(answer.usage_metadata?.output_tokens).toBe(8);
      answers.push(answer);
      history.push(answer);
    }
    return answers;
  }

  for (const streamed of [false, true]) {
    it(`holds a three-turn conversation on Chat Completions${streamed ? ', streamed' : ''}`, async () => {
      const rec = recorder();
      const answers = await converse(chat(rec.fetch), streamed);
      const last = rec.bodies.at(-1)!.messages as Json[];
      expect(last.filter((m) => m.role === 'assistant').map((m) => textOf(m.content))).toEqual(answers.slice(0, 2).map((a) => a.text));
      expect(last.filter((m) => m.role === 'user').map((m) => textOf(m.content))).toEqual(TURNS);
    });

    it(`holds a three-turn conversation on the Responses API${streamed ? ', streamed' : ''}`, async () => {
      const rec = recorder();
      const answers = await converse(chat(rec.fetch, { useResponsesApi: true }), streamed);
      // Earlier answers go back as the output items the server returned (ids and all).
      const input = rec.bodies.at(-1)!.input as Json[];
      const assistant = input.filter((i) => i.role === 'assistant');
      expect(assistant.map((i) => textOf(i.content))).toEqual(answers.slice(0, 2).map((a) => a.text));
      for (const item of assistant) expect(item.id).toMatch(/^msg_/);
    });
  }

  it('stops at a stop sequence', async () => {
    const rec = recorder();
    const llm = chat(rec.fetch, { maxTokens: 16 });
    const full = (await llm.invoke('Once upon a time')).text;
    const stop = stopIn(full);
    const stopped = await llm.invoke('Once upon a time', { stop: [stop] });
    expect(rec.bodies.at(-1)).toMatchObject({ stop: [stop] });
    expect(stopped.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(stopped.response_metadata.finish_reason).toBe('stop');
  });

  it('surfaces an unknown model as an error with the status and the message of the server', async () => {
    const err = (await new ChatOpenAI({ model: 'no-such-model', apiKey: 'none', configuration: { baseURL }, maxRetries: 0 }).invoke('Hi').catch((e: unknown) => e)) as { status?: number; message: string };
    expect(err).toBeInstanceOf(Error);
    expect(err.status).toBe(404);
    expect(err.message).toContain('no-such-model');
  });
});
