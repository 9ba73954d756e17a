/**
 * An example custom route (config: [[routes]] in config/default.toml):
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
  const temperature = body.temperature === undefined ? 0.8 : Number(body.temperature);
  const seed = typeof body.seed === 'number' ? body.seed : 1;
  const stream = (req.headers.accept ?? '').includes('text/event-stream');

  const root = Model.load().newContext().fill(body.prompt);
  root.prefill();
  const gens = Array.from({ length: n }, (_, i) => root.fork().generate({ sampling: { temperature, seed: seed + i }, max_tokens: maxTokens, logprobs: 0 }));
  const candidates = gens.map((g, i) => {
    const r = g.result();
    const score = r.logprobs.reduce((s, l) => s + l.logprob, 0) / Math.max(1, r.logprobs.length);
    const c = { index: i, text: r.text, score };
    if (stream) emit('candidate', c);
    return c;
  });
  const best = candidates.reduce((a, b) => (b.score > a.score ? b : a));
  setHeader('x-best-of-n', String(n));
  if (stream) emit('result', best);
  else setResult({ ...best, candidates });
});
