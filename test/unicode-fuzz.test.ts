/**
 * Random Unicode through every text field of the OpenAI endpoints, the vLLM
 * tokenizer and a custom route: lone surrogates, NUL and other controls,
 * noncharacters (U+FFFE, U+FFFF), astral characters, line separators, a BOM,
 * and grapheme clusters thousands of code units long. Whatever the text,
 * the answer is never a 5xx and no guest traps (a trap is a 500 with the
 * invocation's error); nothing is left held.
 */
import { describe, expect, it } from 'vitest';
import { Rng } from '../src/util/rng.ts';
import { EXAMPLE_ROUTE, expectNothingHeld, startGateway, type TestServer } from './gateway-helpers.ts';
import { randomModelDir } from './helpers.ts';
import { startEngine, type Engine } from '../src/engine/index.ts';
import { afterAll, beforeAll } from 'vitest';

const PIECES = ['a', 'Z', ' ', '\n', '\u0000', '\u0001', '\u001f', '\u007f', '\ud800', '\udfff', '\ud83d', '\ude00', '😀', '🦙', '\uffff', '\ufffe', '\ufeff', '\u2028', '\u2029', 'é', 'e\u0301', '中', '\u200d', '\u202e', '{', '"', '\\', '<|im_end|>', '</s>', '<tool_call>'];

function randomText(rng: Rng): string {
  if (rng.next() < 0.05) return 'e' + '\u0301'.repeat(3000 + Math.floor(rng.next() * 3000)); // one very long grapheme cluster
  const n = Math.floor(rng.next() * 40);
  let s = '';
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(rng.next() * PIECES.length)]!;
  return s;
}

describe('random Unicode in every text field', () => {
  let engine: Engine;
  let server: TestServer;
  beforeAll(async () => {
    engine = await startEngine(randomModelDir(), { threads: 1, numPages: 256, pageSize: 16 });
    server = await startGateway([engine], { extra: EXAMPLE_ROUTE.replace('scope = "examples"', '') });
  });
  afterAll(async () => {
    await server?.close();
    await engine?.close();
  });

  const requests = (rng: Rng, model: string): Array<[string, unknown]> => {
    const t = () => randomText(rng);
    const stream = rng.next() < 0.3;
    return [
      ['/v1/chat/completions', { model, max_tokens: 2, stream, stop: [t()], user: t(), messages: [{ role: 'system', content: [{ type: 'text', text: t() }] }, { role: 'user', content: t(), name: 'n' }] }],
      ['/v1/chat/completions', { model, max_tokens: 2, messages: [{ role: 'user', content: t() }, { role: 'assistant', content: t() }, { role: 'user', content: t() }], logprobs: true, top_logprobs: 2 }],
      ['/v1/completions', { model, max_tokens: 2, stream, prompt: t(), stop: t() || null, echo: rng.next() < 0.5 }],
      ['/v1/completions', { model, max_tokens: 0, prompt: [t() || 'x', t() || 'y'], echo: true, logprobs: 1 }],
      ['/v1/responses', { model, max_output_tokens: 16, stream, input: t() || 'x', instructions: t(), metadata: { k: t().slice(0, 100) }, store: rng.next() < 0.5 }],
      ['/v1/responses', { model, max_output_tokens: 16, input: [{ role: 'user', content: [{ type: 'input_text', text: t() }] }, { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: t() }] }] }],
      ['/tokenize', { model, prompt: t(), return_token_strs: true }],
      ['/tokenize', { model, messages: [{ role: 'user', content: t() }] }],
      ['/v1/examples/best-of/2', { prompt: t() || 'x', max_tokens: 2 }],
    ];
  };

  it('never answers 5xx and never traps a guest, over 20 rounds of every field', async () => {
    const rng = new Rng(20261202);
    const seen = new Map<number, number>();
    for (let round = 0; round < 20; round++) {
      for (const [path, body] of requests(rng, engine.model.name)) {
        const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const text = await res.text();
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        expect(res.status, `${path} ${JSON.stringify(body).slice(0, 300)}\n→ ${text.slice(0, 300)}`).toBeLessThan(500);
        expect(text).not.toMatch(/wasm trap|unreachable|RuntimeError/);
        // A stream that failed after its 200 says so in an error event instead.
        expect(text, `${path} ${JSON.stringify(body).slice(0, 300)}`).not.toMatch(/"(server_error|internal_error)"|"code":"(internal|error)"/);
      }
    }
    expect(seen.get(200) ?? 0, `statuses ${JSON.stringify([...seen])}`).toBeGreaterThan(100); // mostly served, not refused
    await expectNothingHeld(engine);
    for (const name of engine.listSnapshots('default')) engine.deleteSnapshot(name, 'default');
  }, 240_000);
});
