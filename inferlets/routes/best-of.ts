/**
 * An example custom route (config: [[routes]] in pie.toml):
 *
 *   POST /v1/examples/best-of/:n   {"prompt": "...", "max_tokens": 32, "temperature": 0.8}
 *
 * Generates `n` continuations of the prompt together (the prompt is computed
 * once and forked) and answers with the one of highest mean log-probability.
 * With `Accept: text/event-stream` it streams each candidate as it finishes,
 * then the winner. Shows what a route receives (path parameters, query,
 * chosen headers, body) and how it answers (status, headers, body or events).
 */
import { emit, inferlet, Model, setHeader, setResult, setStatus } from '@pie/inferlet';
import type { RouteInput } from '../builtin/protocol.ts';

interface Body {
  prompt?: unknown;
  max_tokens?: unknown;
  temperature?: unknown;
  seed?: unknown;
}

function fail(status: number, message: string, param: string | null): void {
  setStatus(status);
  setResult({ error: { message, type: 'invalid_request_error', param, code: null } });
}

export const run = inferlet<RouteInput<Body | null>>((req) => {
  const n = Number(req.params.n);
  const body = req.body ?? {};
  if (!Number.isInteger(n) || n < 1 || n > 16) return fail(400, `n must be an integer from 1 to 16, got ${JSON.stringify(req.params.n)}`, 'n');
  if (typeof body.prompt !== 'string' || body.prompt === '') return fail(400, 'prompt must be a non-empty string', 'prompt');
  const maxTokens = body.max_tokens === undefined ? 32 : Number(body.max_tokens);
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > 512) return fail(400, 'max_tokens must be an integer from 1 to 512', 'max_tokens');
  const temperature = body.temperature === undefined ? 0.8 : body.temperature;
  if (typeof temperature !== 'number' || !(temperature >= 0 && temperature <= 2)) return fail(400, 'temperature must be a number from 0 to 2', 'temperature');
  const seed = body.seed === undefined ? 1 : body.seed;
  if (!Number.isInteger(seed) || (seed as number) < 0) return fail(400, 'seed must be a non-negative integer', 'seed');
  const stream = (req.headers.accept ?? '').includes('text/event-stream');

  const root = Model.load().newContext().fill(body.prompt);
  root.prefill();
  const gens = Array.from({ length: n }, (_, i) => root.fork().generate({ sampling: { temperature, seed: (seed as number) + i }, max_tokens: maxTokens, logprobs: 0 }));
  setHeader('x-best-of-n', String(n)); // before the first event, which sends the headers
  const candidates = gens.map((g, i) => {
    const r = g.result();
    const score = r.logprobs.reduce((s, l) => s + l.logprob, 0) / Math.max(1, r.logprobs.length);
    const c = { index: i, text: r.text, score };
    if (stream) emit('candidate', c);
    return c;
  });
  const best = candidates.reduce((a, b) => (b.score > a.score ? b : a));
  if (stream) emit('result', best);
  else setResult({ ...best, candidates });
});
