/**
 * The Responses API. POST runs the built-in responses inferlet; with
 * `store` (the default) the response, its items and the conversation's exact
 * tokens go to SQLite and its KV state stays as a snapshot, so a
 * previous_response_id follow-up continues it without re-prefilling (or, once
 * the snapshot is evicted, refills the stored tokens: the same answer). An
 * `item_reference` input item stands for a stored item of the tenant, put in
 * its place before the inferlet sees the request.
 */
import { Router, type Request, type Response } from 'express';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import type { Invocation } from '../runtime/host/invocation.ts';
import type { ConversationHistory, HistoryMessage, ResponsesInput, ResponsesResult } from '../../inferlets/builtin/protocol.ts';
import { itemsToMessages } from '../../inferlets/builtin/response-items.ts';
import { responseObject } from '../../inferlets/builtin/response-object.ts';
import { principalOf, requireScope } from './auth.ts';
import { ApiError, InvalidRequestError, NotFoundError } from './errors.ts';
import { responseFinishReasons } from './finish-reasons.ts';
import { invokeAndRelay, newId, unixNow, type Runtime } from './invoke.ts';
import { modelFor, refuseFields, type Refusals } from './openai-routes.ts';
import { sseEvent } from './relay.ts';
import type { components } from './openapi-types.ts';
import type { ResponseStore, StoredResponse } from './response-store.ts';
import type { SnapshotKeeper } from './snapshot-keeper.ts';

type CreateResponse = components['schemas']['CreateResponse'];
type Item = Record<string, unknown>;

const UNSUPPORTED: Refusals = {
  reasoning: () => false,
  background: (v: unknown) => v === false,
  prompt: () => false,
  truncation: (v: unknown) => v === 'disabled',
};

export interface ResponsesDeps {
  rt: () => Runtime;
  component: () => StoredComponent;
  store: ResponseStore;
  snapshots: SnapshotKeeper;
}

const snapshotName = (id: string) => `response:${id}`;

/** This request's input as items with ids (stored for input_items). */
function inputItems(body: CreateResponse, id: string): Item[] {
  const items: Item[] = typeof body.input === 'string' ? [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: body.input }] }] : (body.input as Item[]);
  return items.map((it, i) => ({ ...(it.type === undefined ? { type: 'message' } : {}), ...it, id: (it.id as string | undefined) ?? `msg_${id.slice(5)}_${i}` }));
}

type InputItem = Extract<CreateResponse['input'], unknown[]>[number];
type ItemReference = components['schemas']['ItemReferenceParam'];

/** An item_reference (its `type` may be left out: then it is the only item without a role and without another type). */
const isReference = (it: InputItem): it is ItemReference => !('role' in it) && (it.type === 'item_reference' || it.type == null);

/** The request with each item_reference in its input replaced by the tenant's stored item of that id; an id it has no item for is a 400 naming it. */
function resolveReferences(body: CreateResponse, store: ResponseStore, tenant: string): CreateResponse {
  if (typeof body.input === 'string' || !body.input.some(isReference)) return body;
  const input = body.input.map((it) => {
    if (!isReference(it)) return it;
    const item = store.item(it.id, tenant);
    if (!item) throw new InvalidRequestError(`Item with id '${it.id}' not found.`, 'input');
    return item as InputItem;
  });
  return { ...body, input };
}

/** A stored conversation as chat messages (for a follow-up on another model, where tokens do not carry over): its items as the built-in reads a request's. */
export function chainMessages(chain: StoredResponse[]): HistoryMessage[] {
  const out: HistoryMessage[] = [];
  for (const r of chain) {
    const instructions = r.response.instructions;
    if (typeof instructions === 'string' && instructions) out.push({ role: 'developer', content: instructions });
    out.push(...itemsToMessages([...r.inputItems, ...r.outputItems]));
  }
  return out;
}

/** The function name of every call made in a stored conversation, by call id (a follow-up's results name their call). */
function callNames(chain: StoredResponse[]): Record<string, string> {
  const names: Record<string, string> = {};
  for (const r of chain) for (const it of [...r.inputItems, ...r.outputItems]) if (it.type === 'function_call' && it.status !== 'incomplete') names[String(it.call_id)] = String(it.name);
  return names;
}

export function responsesRoutes(deps: ResponsesDeps): Router {
  const router = Router();
  const running = new Map<string, { inv: Invocation; input: ResponsesInput<CreateResponse> }>();
  const cancelled = new Set<string>();
  const { store, snapshots } = deps;

  /** What a follow-up continues from: the snapshot and exact tokens on the same model, else the stored items. */
  const history = (prevId: string, tenant: string, model: string): ConversationHistory => {
    const prev = store.get(prevId, tenant);
    if (!prev) throw new InvalidRequestError(`Previous response with id '${prevId}' not found.`, 'previous_response_id', 'previous_response_not_found');
    if (prev.status === 'in_progress') throw new InvalidRequestError(`Previous response with id '${prevId}' is still in progress.`, 'previous_response_id');
    const chain = store.chain(prevId, tenant);
    const calls = callNames(chain);
    if (prev.model === model && prev.contextTokens) return { snapshot: snapshotName(prev.id), tokens: prev.contextTokens, messages: [], calls };
    return { snapshot: null, tokens: null, messages: chainMessages(chain), calls };
  };

  const find = (req: Request, res: Response): StoredResponse => {
    const id = String(req.params.response_id);
    const r = store.get(id, principalOf(res).tenant);
    if (!r) throw new NotFoundError(`No response found with id '${id}'.`, 'not_found', 'response_id');
    return r;
  };

  router.post('/v1/responses', async (req, res) => {
    const principal = principalOf(res);
    requireScope(principal, 'responses');
    const tenant = principal.tenant;
    refuseFields(req.body as Record<string, unknown>, UNSUPPORTED, 'reasoning, prompts, truncation and background responses are not available yet');
    const body = resolveReferences(req.body as CreateResponse, store, tenant);
    if (body.previous_response_id === '') throw new InvalidRequestError('previous_response_id is empty: give a response id, or leave it out', 'previous_response_id');
    const rt = deps.rt();
    const model = modelFor(rt, res, body.model);
    const input: ResponsesInput<CreateResponse> = {
      method: req.method,
      path: req.path,
      params: {},
      query: {},
      headers: {},
      body,
      model,
      id: newId('resp_'),
      created: unixNow(),
      history: body.previous_response_id ? history(body.previous_response_id, tenant, model) : null,
      save_as: null,
    };
    const id = input.id;
    const keep = body.store !== false;
    if (keep && snapshots.enabled) input.save_as = snapshotName(id);
    const engine = rt.engines.get(model)!;
    const record = (status: StoredResponse['status'], response: Record<string, unknown>, tokens: number[] | null) => {
      const evicted = store.put({
        id,
        tenant,
        model,
        createdAt: input.created,
        status,
        previousResponseId: body.previous_response_id ?? null,
        response,
        inputItems: inputItems(body, id),
        outputItems: response.output as Item[],
        contextTokens: tokens,
      });
      // Responses deleted to keep the tenant within its storage quota take their KV snapshots with them.
      for (const old of evicted) for (const e of rt.engines.values()) snapshots.remove(e, tenant, snapshotName(old));
    };
    // Stored from the start, so GET shows it in progress; the outcome replaces it.
    if (keep) record('in_progress', responseObject(input, 'in_progress', []), null);
    /** What the store keeps of a response that did not finish: cancelled, or failed with its error. */
    const ended = (err: unknown, disconnected = false): [StoredResponse['status'], Record<string, unknown>, null] => {
      if (cancelled.has(id) || disconnected) return ['cancelled', responseObject(input, 'cancelled', []), null];
      const e = err instanceof ApiError ? err : null;
      return ['failed', responseObject(input, 'failed', [], { error: { code: e?.code ?? 'server_error', message: e?.message ?? String(err) } }), null];
    };
    let kept = false;
    try {
      const outcome = await invokeAndRelay(
        rt,
        res,
        {
          component: deps.component(),
          input,
          tenant,
          model,
          builtin: true,
          started: (inv) => running.set(id, { inv, input }),
          finishReasons: responseFinishReasons(),
          params: { ...(typeof body.max_output_tokens === 'number' ? { maxTokens: body.max_output_tokens } : {}), n: 1 },
        },
        {
          // The terminal event goes out once the response is stored, so a client may retrieve it at once.
          holdUntilResult: (e) => e.event === 'response.completed' || e.event === 'response.incomplete',
          streamError: (e, numEvents) => {
            const error = cancelled.has(id) ? { code: 'cancelled', message: 'The response was cancelled.', param: null } : { code: e.code, message: e.message, param: e.param };
            return sseEvent('error', JSON.stringify({ type: 'error', ...error, sequence_number: numEvents }));
          },
          onResult: (r) => {
            if (r.status !== 200 || r.data === null) {
              if (keep) store.delete(id, tenant); // refused (a 4xx from the inferlet): no response was created
              return;
            }
            const out = JSON.parse(r.data) as ResponsesResult;
            if (keep) {
              record(out.response.status as StoredResponse['status'], out.response, out.context_tokens);
              if (input.save_as) snapshots.add(engine, tenant, input.save_as);
              kept = true;
            }
            return JSON.stringify(out.response);
          },
        },
      );
      if (outcome.result === null && keep) record(...ended(outcome.error, outcome.disconnected));
    } catch (err) {
      if (keep) record(...ended(err));
      if (!cancelled.has(id)) throw err;
      // Cancelled through POST /v1/responses/{id}/cancel: the caller gets the cancelled response.
      res.json(responseObject(input, 'cancelled', []));
    } finally {
      running.delete(id);
      cancelled.delete(id);
      // Failed, refused or cancelled: a snapshot the inferlet may have saved has no stored response to follow.
      if (input.save_as && !kept) engine.deleteSnapshot(input.save_as, tenant);
    }
  });

  router.get('/v1/responses/:response_id', (req, res) => {
    requireScope(principalOf(res), 'responses');
    res.json(find(req, res).response);
  });

  router.delete('/v1/responses/:response_id', (req, res) => {
    requireScope(principalOf(res), 'responses');
    const r = find(req, res);
    // Its run would store it again when it ends: it must end first.
    if (running.has(r.id)) throw new InvalidRequestError(`Response '${r.id}' is in progress; cancel it (POST /v1/responses/${r.id}/cancel) before deleting it.`, 'response_id');
    store.delete(r.id, r.tenant);
    const engine = deps.rt().engines.get(r.model);
    if (engine) snapshots.remove(engine, r.tenant, snapshotName(r.id));
    res.json({ id: r.id, object: 'response', deleted: true });
  });

  router.post('/v1/responses/:response_id/cancel', (req, res) => {
    requireScope(principalOf(res), 'responses');
    const id = String(req.params.response_id);
    const run = running.get(id);
    if (!run || principalOf(res).tenant !== run.inv.tenant) {
      const r = find(req, res);
      throw new InvalidRequestError(`Response '${id}' is not in progress (its status is ${r.status}); only a running response can be cancelled.`, 'response_id');
    }
    cancelled.add(id);
    run.inv.cancel('cancelled through POST /v1/responses/{id}/cancel');
    res.json(responseObject(run.input, 'cancelled', []));
  });

  router.get('/v1/responses/:response_id/input_items', (req, res) => {
    requireScope(principalOf(res), 'responses');
    const q = req.query as { after?: string; limit?: string | number; order?: 'asc' | 'desc' };
    const list = store.inputItems(String(req.params.response_id), principalOf(res).tenant, {
      ...(q.after ? { after: String(q.after) } : {}),
      ...(q.limit !== undefined ? { limit: Number(q.limit) } : {}),
      ...(q.order ? { order: q.order } : {}),
    });
    if (!list) throw new NotFoundError(`No response found with id '${req.params.response_id}'.`, 'not_found', 'response_id');
    res.json(list);
  });

  return router;
}
