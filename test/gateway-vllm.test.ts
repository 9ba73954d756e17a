/**
 * What evaluation harnesses and clients written for vLLM send: prompt
 * log-probabilities (`echo` + `logprobs`, `max_tokens: 0`, vLLM's
 * `prompt_logprobs`) and vLLM's generation extensions, through a real
 * listening server on stories260K.
 */
import { describe, expect, it } from 'vitest';
import { referenceForward } from '../drivers/reference/forward.ts';
import { expectNothingHeld, servedEngine } from './gateway-helpers.ts';
import { haveStories, logSoftmax, SKIP_STORIES, storiesModelDir } from './helpers.ts';

const TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside.';

async function post(url: string, path: string, body: unknown) {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: (body as { stream?: boolean }).stream ? text : (JSON.parse(text) as any) };
}

describe.skipIf(!haveStories)(`prompt log-probabilities and vLLM extensions through the gateway ${SKIP_STORIES}`, () => {
  const s = servedEngine(storiesModelDir, { maxTokensPerStep: 7 }); // long prompts are prefilled in several chunks

  it('answers the lm-eval request (echo, logprobs 1, max_tokens 0) with every prompt token scored as the reference model does', async () => {
    const tokens = s.engine.model.tokenizer.encode(TEXT); // with its BOS, as a text prompt is filled
    const ref = referenceForward(s.engine.model.config, s.engine.model.weights, tokens).map(logSoftmax);
    const c = await s.client.completions.create({ model: s.model, prompt: TEXT, echo: true, logprobs: 1, max_tokens: 0, temperature: 0 });
    const choice = c.choices[0]!;
    expect(choice.text).toBe(TEXT);
    const lp = choice.logprobs!;
    expect(lp.tokens).toHaveLength(tokens.length);
    expect(lp.token_logprobs![0]).toBeNull();
    expect(lp.top_logprobs![0]).toBeNull();
    for (let i = 1; i < tokens.length; i++) {
      expect(Math.abs(lp.token_logprobs![i]! - ref[i - 1]![tokens[i]!]!)).toBeLessThanOrEqual(1e-4);
      const [[, best]] = Object.entries(lp.top_logprobs![i]!);
      expect(Math.abs(best! - Math.max(...ref[i - 1]!))).toBeLessThanOrEqual(1e-4);
    }
    expect(lp.text_offset![0]).toBe(0);
    // Each token's text stands in the echoed text at its offset (the first word's without the dummy-prefix space).
    lp.tokens!.slice(1).forEach((t, j) => expect(TEXT.slice(lp.text_offset![j + 1]!).startsWith(j === 0 ? t.trimStart() : t), `${j}: ${t}`).toBe(true));
    expect(c.usage).toMatchObject({ prompt_tokens: tokens.length, completion_tokens: 0 });
    await expectNothingHeld(s.engine);
  });

  it('scores token-id prompts (several in one request) and follows the prompt with the completion when max_tokens > 0', async () => {
    const a = s.engine.model.tokenizer.encode(TEXT, { addBos: false });
    const b = a.slice(3, 20);
    const c = await s.client.completions.create({ model: s.model, prompt: [a, b], echo: true, logprobs: 2, max_tokens: 4, temperature: 0 });
    expect(c.choices).toHaveLength(2);
    const [ca, cb] = c.choices;
    expect(ca!.logprobs!.tokens).toHaveLength(a.length + 4);
    expect(cb!.logprobs!.tokens).toHaveLength(b.length + 4);
    expect(ca!.logprobs!.token_logprobs![0]).toBeNull();
    expect(ca!.logprobs!.token_logprobs!.slice(1).every((x) => typeof x === 'number' && x <= 0)).toBe(true);
    expect(Object.keys(ca!.logprobs!.top_logprobs![a.length]!)).toHaveLength(2); // the first generated token's alternatives
    // The completion's part is the generation's own logprobs, as without echo.
    const plain = await s.client.completions.create({ model: s.model, prompt: a, logprobs: 2, max_tokens: 4, temperature: 0 });
    expect(ca!.logprobs!.token_logprobs!.slice(a.length)).toEqual(plain.choices[0]!.logprobs!.token_logprobs);
    expect(ca!.text).toBe(s.engine.model.tokenizer.decode(a) + plain.choices[0]!.text);
    await expectNothingHeld(s.engine);
  });

  it('places every echoed token at its offset: characters split over byte tokens, a prompt that starts with a space', async () => {
    for (const prompt of [' Hi there, 🦙 café!', 'Lily saw 🦙🦙 and said "héllo".']) {
      const c = await s.client.completions.create({ model: s.model, prompt, echo: true, logprobs: 1, max_tokens: 0 });
      const { tokens, text_offset } = c.choices[0]!.logprobs!;
      expect(c.choices[0]!.text).toBe(prompt);
      let last = 0;
      tokens!.forEach((t, i) => {
        const at = text_offset![i]!;
        expect(at).toBeGreaterThanOrEqual(last);
        last = at;
        if (i === 0 || t.startsWith('bytes:')) return; // the BOS token, or part of a character
        const first = i === 1;
        expect(prompt.slice(at).startsWith(first && !prompt.startsWith(' ') ? t.trimStart() : t), `${JSON.stringify(prompt)} token ${i} ${JSON.stringify(t)} at ${at}`).toBe(true);
      });
    }
  });

  it('streams the echoed prompt with its scores in the first chunk', async () => {
    const stream = await s.client.completions.create({ model: s.model, prompt: TEXT, echo: true, logprobs: 1, max_tokens: 3, temperature: 0, stream: true });
    const chunks = [];
    for await (const ch of stream) chunks.push(ch);
    expect(chunks[0]!.choices[0]!.text).toBe(TEXT);
    expect(chunks[0]!.choices[0]!.logprobs!.token_logprobs![0]).toBeNull();
    expect(chunks[0]!.choices[0]!.logprobs!.tokens!.length).toBe(s.engine.model.tokenizer.encode(TEXT).length);
    await expectNothingHeld(s.engine);
  });

  it("returns vLLM's prompt_logprobs per choice in completions and on the response in chat, the same with n > 1", async () => {
    const c = await post(s.server.url, '/v1/completions', { model: s.model, prompt: TEXT, max_tokens: 2, prompt_logprobs: 2, n: 2, temperature: 0 });
    expect(c.status).toBe(200);
    const pl = c.json.choices[0].prompt_logprobs;
    expect(pl[0]).toBeNull();
    const tokens = s.engine.model.tokenizer.encode(TEXT);
    expect(pl).toHaveLength(tokens.length);
    const entry = pl[5];
    expect(entry[String(tokens[5])]).toMatchObject({ rank: expect.any(Number), decoded_token: expect.any(String) });
    expect(Object.values(entry).some((e: any) => e.rank === 1)).toBe(true);
    expect(c.json.choices[1].prompt_logprobs).toEqual(pl);
    const chat = await post(s.server.url, '/v1/chat/completions', { model: s.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, prompt_logprobs: 0 });
    expect(chat.status).toBe(200);
    expect(chat.json.prompt_logprobs[0]).toBeNull();
    expect(chat.json.prompt_logprobs.length).toBe(chat.json.usage.prompt_tokens);
    expect(Object.keys(chat.json.prompt_logprobs[1])).toHaveLength(1);
    await expectNothingHeld(s.engine);
  });

  it('accepts ignore_eos, min_tokens, stop_token_ids, include_stop_str_in_output and skip_special_tokens with their vLLM meaning', async () => {
    const base = { model: s.model, prompt: 'Once upon a time', temperature: 0 };
    const plain = await post(s.server.url, '/v1/completions', { ...base, max_tokens: 30 });
    const ids = plain.json.choices[0];
    // stop_token_ids: the token of " little" ends it.
    const little = s.engine.model.tokenizer.encode('there was a little', { addBos: false }).at(-1);
    const stopped = await post(s.server.url, '/v1/completions', { ...base, max_tokens: 30, stop_token_ids: [little] });
    expect(stopped.json.choices[0].finish_reason).toBe('stop');
    expect(ids.text.startsWith(stopped.json.choices[0].text + ' little')).toBe(true);
    // ignore_eos keeps the stop_token_ids given: it still ends at " little".
    const ignored = await post(s.server.url, '/v1/completions', { ...base, max_tokens: 30, stop_token_ids: [little], ignore_eos: true });
    expect(ignored.json.choices[0]).toMatchObject({ finish_reason: 'stop', text: stopped.json.choices[0].text });
    // min_tokens past it: the token is held back, and the text goes on.
    const held = await post(s.server.url, '/v1/completions', { ...base, max_tokens: 30, stop_token_ids: [little], min_tokens: 10, ignore_eos: true });
    expect(held.json.usage.completion_tokens).toBeGreaterThanOrEqual(10);
    expect(held.json.choices[0].text.startsWith(stopped.json.choices[0].text)).toBe(true);
    expect(held.json.choices[0].text).not.toMatch(/^, there was a little/); // the token was not drawn where greedy put it
    // include_stop_str_in_output keeps the stop string.
    const incl = await post(s.server.url, '/v1/completions', { ...base, max_tokens: 30, stop: ['girl'], include_stop_str_in_output: true });
    expect(incl.json.choices[0].text.endsWith('girl')).toBe(true);
    const excl = await post(s.server.url, '/v1/completions', { ...base, max_tokens: 30, stop: ['girl'] });
    expect(incl.json.choices[0].text).toBe(excl.json.choices[0].text + 'girl');
    // ignore_eos: generation runs to max_tokens.
    const long = await post(s.server.url, '/v1/completions', { ...base, max_tokens: 300, ignore_eos: true });
    expect(long.json.usage.completion_tokens).toBe(300);
    expect(long.json.choices[0].finish_reason).toBe('length');
    // skip_special_tokens: false keeps a special token's text (here <s>, forced by a bias).
    const forced = { model: s.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, logit_bias: { 1: 100 }, temperature: 0 };
    const kept = await post(s.server.url, '/v1/chat/completions', { ...forced, skip_special_tokens: false });
    expect(kept.status).toBe(200);
    expect(kept.json.choices[0].message.content).toBe('<s><s><s>');
    const skipped = await post(s.server.url, '/v1/chat/completions', forced);
    expect(skipped.json.choices[0].message.content).toBe('');
    const bad = await post(s.server.url, '/v1/completions', { ...base, stop_token_ids: [999999] });
    expect(bad.status).toBe(400);
    expect(bad.json.error.param).toBe('stop_token_ids');
    const tooMany = await post(s.server.url, '/v1/chat/completions', { model: s.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, min_tokens: 4 });
    expect(tooMany.json.error).toMatchObject({ param: 'min_tokens' });
    await expectNothingHeld(s.engine);
  });

  it("accepts OpenAI's newer chat parameters, and refuses only a verbosity it cannot honour", async () => {
    const body = { model: s.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 };
    const ok = await post(s.server.url, '/v1/chat/completions', {
      ...body,
      prompt_cache_key: 'k1',
      prompt_cache_retention: '24h',
      safety_identifier: 'user-1',
      verbosity: 'medium',
      store: true,
      stream: true,
      stream_options: { include_usage: true, include_obfuscation: false },
    });
    expect(ok.status).toBe(200);
    const low = await post(s.server.url, '/v1/chat/completions', { ...body, verbosity: 'low' });
    expect(low.status).toBe(400);
    expect(low.json.error).toMatchObject({ param: 'verbosity', code: 'unsupported_value' });
  });

  it("tokenizes and detokenizes in vLLM's shapes, as the completion and chat endpoints fill their prompts", async () => {
    const tok = s.engine.model.tokenizer;
    const t = await post(s.server.url, '/tokenize', { model: s.model, prompt: TEXT, return_token_strs: true });
    expect(t.status).toBe(200);
    expect(t.json.tokens).toEqual(tok.encode(TEXT));
    expect(t.json.count).toBe(t.json.tokens.length);
    expect(t.json.max_model_len).toBe(s.engine.model.config.maxPositionEmbeddings);
    expect(t.json.token_strs.join('').trim()).toContain('Once upon a time');
    // Without a model: the first the key may use; without special tokens: no BOS.
    const bare = await post(s.server.url, '/tokenize', { prompt: TEXT, add_special_tokens: false });
    expect(bare.json.tokens).toEqual(tok.encode(TEXT, { addBos: false }));
    expect(bare.json.token_strs).toBeNull();
    // Messages: the same count the chat endpoint reports as prompt_tokens.
    const messages = [{ role: 'user', content: 'Hi there' }];
    const chat = await post(s.server.url, '/v1/chat/completions', { model: s.model, messages, max_tokens: 1 });
    const tm = await post(s.server.url, '/tokenize', { model: s.model, messages });
    expect(tm.json.count).toBe(chat.json.usage.prompt_tokens);
    const d = await post(s.server.url, '/detokenize', { model: s.model, tokens: t.json.tokens });
    expect(d.json).toEqual({ prompt: TEXT });
    const badIds = await post(s.server.url, '/detokenize', { model: s.model, tokens: [10 ** 7] });
    expect(badIds.status).toBe(400);
    const both = await post(s.server.url, '/tokenize', { prompt: 'a', messages });
    expect(both.status).toBe(400);
    const unknown = await post(s.server.url, '/tokenize', { model: 'nope', prompt: 'a' });
    expect(unknown.status).toBe(404);
    const v = await fetch(`${s.server.url}/version`);
    expect(await v.json()).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    await expectNothingHeld(s.engine);
  });
});
