/**
 * What a client is told when a request's shape is wrong: the field that is
 * wrong and why, never the first failing branch of a union ("must be string"
 * for an image part), and "not supported" for what OpenAI defines but this
 * server does not implement.
 */
import { describe, expect, it } from 'vitest';
import { servedEngine } from './gateway-helpers.ts';
import { randomModelDir } from './helpers.ts';

describe('validation messages', () => {
  const s = servedEngine(() => randomModelDir());
  const post = async (path: string, body: Record<string, unknown>) => {
    const res = await fetch(`${s.server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: s.model, ...body }) });
    return { status: res.status, error: ((await res.json()) as { error: { message: string; param: string | null; code: string | null } }).error };
  };

  it('says plainly that image, audio and file parts are not supported, naming the part', async () => {
    const image = await post('/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'text', text: 'see' }, { type: 'image_url', image_url: { url: 'http://x/y.png' } }] }] });
    expect(image).toMatchObject({ status: 400, error: { param: 'messages.0.content.1.type', code: 'unsupported_value' } });
    expect(image.error.message).toMatch(/"image_url" is not supported: this model takes text only/);
    const audio = await post('/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'x', format: 'wav' } }] }] });
    expect(audio.error).toMatchObject({ param: 'messages.0.content.0.type', code: 'unsupported_value' });
    const responses = await post('/v1/responses', { input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x/y.png' }] }] });
    expect(responses).toMatchObject({ status: 400, error: { param: 'input.0.content.0.type', code: 'unsupported_value' } });
    expect(responses.error.message).toMatch(/this model takes text only/);
    const file = await post('/v1/responses', { input: [{ type: 'message', role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] });
    expect(file.error.param).toBe('input.0.content.0.type');
  });

  it('names an unknown role or item type with the values allowed, and a wrong field of the right branch', async () => {
    const role = await post('/v1/chat/completions', { messages: [{ role: 'robot', content: 'x' }] });
    expect(role).toMatchObject({ status: 400, error: { param: 'messages.0.role', code: 'invalid_value' } });
    expect(role.error.message).toContain("'system', 'developer', 'user', 'assistant', 'tool'");
    // The user branch's own error (content), not the system branch's role.
    const content = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 5 }] });
    expect(content.error.param).toBe('messages.0.content');
    const tool = await post('/v1/chat/completions', { messages: [{ role: 'tool', tool_call_id: 'c1', content: 5 }] });
    expect(tool.error.param).toBe('messages.0.content');
    const unknown = await post('/v1/chat/completions', { messages: [{ role: 'tool', tool_call_id: 'c1', content: 'x', colour: 'red' }] });
    expect(unknown.error).toMatchObject({ param: 'messages.0.colour', code: 'unknown_parameter' });
    for (const role of ['system', 'user', 'assistant']) {
      const extra = await post('/v1/chat/completions', { messages: [{ role, content: 'x', reasoning_content: 'y' }] });
      expect(extra.error, role).toMatchObject({ param: 'messages.0.reasoning_content', code: 'unknown_parameter' });
    }
    const input = await post('/v1/responses', { input: [{ role: 'user', content: 'x', foo: 1 }] });
    expect(input.error).toMatchObject({ param: 'input.0.foo', code: 'unknown_parameter' });
    const call = await post('/v1/responses', { input: [{ type: 'function_call_output', call_id: 5, output: 'x' }] });
    expect(call.error.param).toBe('input.0.call_id');
    const refusal = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: [{ type: 'refusal', refusal: 'no' }] }, { role: 'user', content: 'y' }] });
    expect(refusal.error).toMatchObject({ param: 'messages.1.content.0.type', code: 'unsupported_value' });
    const item = await post('/v1/responses', { input: [{ type: 'reasoning', id: 'r1', summary: [] }] });
    expect(item).toMatchObject({ status: 400, error: { param: 'input.0.type', code: 'unsupported_value' } });
    const bogus = await post('/v1/responses', { input: [{ type: 'banana' }] });
    expect(bogus).toMatchObject({ status: 400, error: { param: 'input.0.type', code: 'invalid_value' } });
  });

  it('reports an output format it does not implement as not supported, not as an unknown argument', async () => {
    const text = await post('/v1/responses', { input: 'hi', text: { format: { type: 'grammar', grammar: 'x' } } });
    expect(text).toMatchObject({ status: 400, error: { param: 'text.format.type', code: 'invalid_value' } });
    expect(text.error.message).toContain("'text', 'json_schema', 'json_object'");
    const chat = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], response_format: { type: 'grammar' } });
    expect(chat.error.param).toBe('response_format.type');
    const verbosity = await post('/v1/responses', { input: 'hi', text: { verbosity: 'high' } });
    expect(verbosity).toMatchObject({ status: 400, error: { param: 'text.verbosity', code: 'unsupported_value' } });
    const strict = await post('/v1/responses', { input: 'hi', max_output_tokens: 16, text: { format: { type: 'json_schema', name: 'x', strict: true, schema: { type: 'object' } } } });
    expect(strict.status).toBe(200);
  });

  it('samples at the extremes as OpenAI means them: +100 bias makes a token certain, every token at -100 changes nothing', async () => {
    const V = s.engine.model.config.vocabSize;
    const complete = async (body: object) => {
      const res = await fetch(`${s.server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: s.model, prompt: 'hello', ...body }) });
      expect(res.status).toBe(200);
      return ((await res.json()) as { choices: Array<{ text: string }> }).choices.map((c) => c.text);
    };
    const bias = { 300: 100 };
    const [certain] = await complete({ max_tokens: 8, temperature: 0, logit_bias: bias });
    expect(certain).toBe(certain!.slice(0, certain!.length / 8).repeat(8)); // the one token, eight times
    for (const extra of [{}, { logprobs: 0 }, { top_p: 0.9, top_k: 40 }]) {
      const texts = await complete({ max_tokens: 8, n: 3, temperature: 1.3, seed: 5, logit_bias: bias, ...extra });
      for (const t of texts) expect(t, JSON.stringify(extra)).toBe(certain);
    }
    const all = Object.fromEntries(Array.from({ length: V }, (_, i) => [i, -100]));
    const run = async (logit_bias: object) => (await complete({ max_tokens: 6, temperature: 0.8, seed: 9, logit_bias }))[0];
    expect(await run(all)).toBe(await run({}));
  });
});
