/**
 * POST /v1/chat/completions and /v1/completions (each served by its built-in
 * inferlet), GET /v1/models, and vLLM's POST /tokenize, POST /detokenize
 * (a built-in inferlet too) and GET /version. The handlers check what the OpenAPI validator
 * cannot (fields we do not implement, the model and the key's scopes) and
 * hand the request to the inferlet.
 */
import { readFileSync, statSync } from 'node:fs';
import { Router, type Request, type Response } from 'express';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import type { OpenAIInput } from '../../inferlets/builtin/protocol.ts';
import { mayUseModel, principalOf, requireModel, requireScope } from './auth.ts';
import { ModelNotFoundError, UnsupportedFieldError } from './errors.ts';
import { choicesFinishReasons } from './finish-reasons.ts';
import { invokeAndRelay, newId, unixNow, type Runtime } from './invoke.ts';
import { relay } from './relay.ts';
import type { RequestParams } from './metrics.ts';
import type { components } from './openapi-types.ts';

type ChatRequest = components['schemas']['CreateChatCompletionRequest'];
type CompletionRequest = components['schemas']['CreateCompletionRequest'];

/** Fields refused unless their value is harmless (the predicate says which values are). */
export type Refusals = Record<string, (v: unknown) => boolean>;

export function refuseFields(body: Record<string, unknown>, fields: Refusals, detail: string): void {
  for (const [field, harmless] of Object.entries(fields)) {
    const v = body[field];
    if (v === undefined || v === null || harmless(v)) continue;
    throw new UnsupportedFieldError(field, detail);
  }
}

const LATER = 'legacy functions, audio, predictions, reasoning effort and web search are not available';

const never = () => false;
const emptyList = (v: unknown) => Array.isArray(v) && v.length === 0;

const CHAT_UNSUPPORTED: Refusals = {
  functions: emptyList,
  function_call: (v: unknown) => v === 'none' || v === 'auto',
  audio: never,
  modalities: (v: unknown) => Array.isArray(v) && v.every((m) => m === 'text'),
  prediction: never,
  reasoning_effort: never,
  web_search_options: never,
};

const COMPLETION_UNSUPPORTED: Refusals = { suffix: (v) => v === '', best_of: (v) => v === 1 };

/** The served model a request names, after the key's scopes. */
export function modelFor(rt: Runtime, res: Response, model: string): string {
  requireModel(principalOf(res), model, new Set(rt.engines.keys()));
  return model;
}

/** The max_tokens (or max_completion_tokens) and n a request gave, for the metrics. */
function requestParams(body: ChatRequest | CompletionRequest): RequestParams {
  const maxTokens = ('max_completion_tokens' in body ? body.max_completion_tokens : undefined) ?? body.max_tokens;
  return { ...(typeof maxTokens === 'number' ? { maxTokens } : {}), n: body.n ?? 1 };
}

export function openaiInput<B>(req: Request, body: B, model: string, id: string): OpenAIInput<B> {
  return { method: req.method, path: req.path, params: {}, query: {}, headers: {}, body, model, id, created: unixNow() };
}

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export function openaiRoutes(rt: () => Runtime, builtins: () => { chat: StoredComponent; completions: StoredComponent; tokenize: StoredComponent }): Router {
  const router = Router();

  /** A POST served by a built-in inferlet: scope, fields it refuses, then the invocation. */
  const builtinRoute = (path: string, scope: string, component: () => StoredComponent, idPrefix: string, refused: Refusals, why: string) =>
    router.post(path, async (req, res) => {
      const body = req.body as ChatRequest | CompletionRequest;
      requireScope(principalOf(res), scope);
      refuseFields(body as Record<string, unknown>, refused, why);
      const model = modelFor(rt(), res, body.model);
      const input = openaiInput(req, body, model, newId(idPrefix));
      await invokeAndRelay(rt(), res, { component: component(), input, tenant: principalOf(res).tenant, model, builtin: true, finishReasons: choicesFinishReasons(), params: requestParams(body), retryLost: true });
    });

  builtinRoute('/v1/chat/completions', 'chat', () => builtins().chat, 'chatcmpl-', CHAT_UNSUPPORTED, LATER);
  builtinRoute('/v1/completions', 'completions', () => builtins().completions, 'cmpl-', COMPLETION_UNSUPPORTED, 'use n for several choices; insertion (suffix) is not available');

  const modelObject = (id: string) => ({ id, object: 'model', created: Math.floor(statSync(rt().engines.get(id)!.model.dir).mtimeMs / 1000), owned_by: 'pie-gateway' });

  router.get('/v1/models', (_req, res) => {
    const p = principalOf(res);
    res.json({ object: 'list', data: [...rt().engines.keys()].filter((m) => mayUseModel(p, m)).map(modelObject) });
  });

  router.get('/v1/models/:model', (req, res) => {
    const id = String(req.params.model);
    if (!rt().engines.has(id) || !mayUseModel(principalOf(res), id)) throw new ModelNotFoundError(id);
    res.json(modelObject(id));
  });

  // vLLM's utilities. Tokenizing runs no generation: it is not a request in the metrics.
  const tokenizing = (path: string) =>
    router.post(path, async (req, res) => {
      const body = req.body as { model?: string; messages?: unknown };
      const p = principalOf(res);
      requireScope(p, body.messages !== undefined ? 'chat' : 'completions');
      const served = [...rt().engines.keys()];
      const model = modelFor(rt(), res, body.model ?? served.find((m) => mayUseModel(p, m)) ?? served[0]!);
      const inv = rt().host.invoke(builtins().tokenize, { input: openaiInput(req, body, model, ''), tenant: p.tenant, models: [model], reuseInstance: true });
      await relay(res, inv);
    });
  tokenizing('/tokenize');
  tokenizing('/detokenize');
  router.get('/version', (_req, res) => void res.json({ version: VERSION }));

  return router;
}
