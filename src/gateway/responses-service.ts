/**
 * The Responses API's logic behind its routes: what a request continues
 * (a stored response's KV snapshot and exact tokens on the same model, its
 * items as messages on another), what is stored of a response as it starts
 * and however it ends, the snapshot kept for follow-ups, and retrieving,
 * deleting, cancelling and listing. The routes (responses-routes.ts) only
 * read the request, check scopes and answer.
 */
import type { ConversationHistory, HistoryMessage, ResponsesInput, ResponsesResult } from '../../inferlets/builtin/protocol.ts';
import { itemsToMessages } from '../../inferlets/builtin/response-items.ts';
import { responseObject } from '../../inferlets/builtin/response-object.ts';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import type { InvocationResult } from '../runtime/host/invocation.ts';
import type { RunningInvocation } from '../runtime/host/port.ts';
import { ApiError, InvalidRequestError, NotFoundError } from './errors.ts';
import { newId, unixNow, type Runtime } from './invoke.ts';
import type { components } from './openapi-types.ts';
import type { ItemList, ResponseStore, StoredResponse } from './response-store.ts';

type CreateResponse = components['schemas']['CreateResponse'];
type Item = Record<string, unknown>;

export interface ResponsesDeps {
  rt: () => Runtime;
  component: () => StoredComponent;
  store: ResponseStore;
}

const snapshotName = (id: string) => `response:${id}`;
/** The longest a cancel waits for its run to end before it answers. */
const CANCEL_WAIT_MS = 10_000;

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

/** One response being made: the built-in's input, and what the service needs to know of it. */
export interface ResponseRun {
  input: ResponsesInput<CreateResponse>;
  tenant: string;
  /** The model it runs on (its snapshot lives with that model's engine). */
  model: string;
  /** Stored (store is not false). */
  keep: boolean;
  /** Its outcome has been stored with its snapshot. */
  kept: boolean;
}

export class ResponsesService {
  private readonly deps: ResponsesDeps;
  /** Runs whose invocation has started, until they end (`ended` then resolves). */
  private readonly running = new Map<string, { inv: RunningInvocation; run: ResponseRun; ended: Promise<void>; end: () => void }>();
  private readonly cancelled = new Set<string>();

  constructor(deps: ResponsesDeps) {
    this.deps = deps;
  }

  get component(): StoredComponent {
    return this.deps.component();
  }

  /** The request with its item references resolved (each a stored item of the tenant; 400 for one it has not). */
  resolve(body: CreateResponse, tenant: string): CreateResponse {
    const resolved = resolveReferences(body, this.deps.store, tenant);
    if (resolved.previous_response_id === '') throw new InvalidRequestError('previous_response_id is empty: give a response id, or leave it out', 'previous_response_id');
    return resolved;
  }

  /**
   * A new response to a resolved request for the tenant on `model`: the
   * conversation it continues, where its KV state is to be saved; stored
   * from the start (in progress) when it is to be kept.
   */
  begin(resolved: CreateResponse, tenant: string, model: string, request: { method: string; path: string }): ResponseRun {
    const input: ResponsesInput<CreateResponse> = {
      method: request.method,
      path: request.path,
      params: {},
      query: {},
      headers: {},
      body: resolved,
      model,
      id: newId('resp_'),
      created: unixNow(),
      history: resolved.previous_response_id ? this.history(resolved.previous_response_id, tenant, model) : null,
      save_as: null,
    };
    const run: ResponseRun = { input, tenant, model, keep: resolved.store !== false, kept: false };
    if (run.keep && this.deps.rt().snapshots.enabled) input.save_as = snapshotName(input.id);
    // Stored from the start, so GET shows it in progress; the outcome replaces it.
    if (run.keep) this.record(run, 'in_progress', responseObject(input, 'in_progress', []), null);
    return run;
  }

  /** Its invocation started (it may be cancelled by id from now on). */
  started(run: ResponseRun, inv: RunningInvocation): void {
    let end!: () => void;
    const ended = new Promise<void>((r) => (end = r));
    this.running.set(run.input.id, { inv, run, ended, end });
  }

  /**
   * The built-in's result: stored with its snapshot (when kept), and the
   * Response object the client gets; undefined for a refusal (no response
   * was created).
   */
  finished(run: ResponseRun, r: InvocationResult): string | undefined {
    if (r.status !== 200 || r.data === null) {
      if (run.keep) this.deps.store.delete(run.input.id, run.tenant); // refused (a 4xx from the inferlet): no response was created
      return undefined;
    }
    const out = JSON.parse(r.data) as ResponsesResult;
    if (run.keep) {
      this.record(run, out.response.status as StoredResponse['status'], out.response, out.context_tokens);
      if (run.input.save_as) this.deps.rt().snapshots.keep(run.model, run.tenant, run.input.save_as);
      run.kept = true;
    }
    return JSON.stringify(out.response);
  }

  /** It ended without a result: what is stored of it (cancelled, or failed with its error). */
  failed(run: ResponseRun, err: unknown, disconnected = false): void {
    if (!run.keep) return;
    if (this.cancelled.has(run.input.id) || disconnected) return this.record(run, 'cancelled', responseObject(run.input, 'cancelled', []), null);
    const e = err instanceof ApiError ? err : null;
    this.record(run, 'failed', responseObject(run.input, 'failed', [], { error: { code: e?.code ?? 'server_error', message: e?.message ?? String(err) } }), null);
  }

  /** Whether it was cancelled through POST /v1/responses/{id}/cancel. */
  wasCancelled(run: ResponseRun): boolean {
    return this.cancelled.has(run.input.id);
  }

  /** It is over, however: a snapshot saved for a response that was not stored goes. */
  end(run: ResponseRun): void {
    this.running.get(run.input.id)?.end();
    this.running.delete(run.input.id);
    this.cancelled.delete(run.input.id);
    // Failed, refused or cancelled: a snapshot the inferlet may have saved has no stored response to follow.
    if (run.input.save_as && !run.kept) this.deps.rt().snapshots.drop(run.model, run.tenant, run.input.save_as);
  }

  get(id: string, tenant: string): StoredResponse {
    const r = this.deps.store.get(id, tenant);
    if (!r) throw new NotFoundError(`No response found with id '${id}'.`, 'not_found', 'response_id');
    return r;
  }

  /** Deletes a stored response and its snapshot (one in progress must be cancelled first). */
  delete(id: string, tenant: string): void {
    const r = this.get(id, tenant);
    // Its run would store it again when it ends: it must end first.
    if (this.running.has(r.id)) throw new InvalidRequestError(`Response '${r.id}' is in progress; cancel it (POST /v1/responses/${r.id}/cancel) before deleting it.`, 'response_id');
    this.deps.store.delete(r.id, r.tenant);
    this.deps.rt().snapshots.drop(r.model, r.tenant, snapshotName(r.id));
  }

  /**
   * Cancels a response in progress: once its run has ended, its Response
   * object as cancelled (an invocation on the engine thread ends a little
   * after it is asked to). A run that ended by itself meanwhile, and a second
   * cancel, get the 400 a cancel after the end gets. Past CANCEL_WAIT_MS it
   * answers with the response as stored, still in progress.
   */
  async cancel(id: string, tenant: string): Promise<Record<string, unknown>> {
    const running = this.running.get(id);
    const notRunning = (status: string) => new InvalidRequestError(`Response '${id}' is not in progress (its status is ${status}); only a running response can be cancelled.`, 'response_id');
    if (!running || tenant !== running.run.tenant) throw notRunning(this.get(id, tenant).status);
    const first = !this.cancelled.has(id);
    this.cancelled.add(id);
    if (first) running.inv.cancel('cancelled through POST /v1/responses/{id}/cancel');
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([running.ended.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), CANCEL_WAIT_MS)))]);
    clearTimeout(timer);
    if (!ended) return this.deps.store.get(id, tenant)?.response ?? responseObject(running.run.input, 'in_progress', []);
    const state = running.inv.state;
    if (first && state === 'cancelled') return responseObject(running.run.input, 'cancelled', []);
    throw notRunning(this.deps.store.get(id, tenant)?.status ?? (state === 'succeeded' ? 'completed' : state));
  }

  inputItems(id: string, tenant: string, q: { after?: string; limit?: number; order?: 'asc' | 'desc' }): ItemList {
    const list = this.deps.store.inputItems(id, tenant, q);
    if (!list) throw new NotFoundError(`No response found with id '${id}'.`, 'not_found', 'response_id');
    return list;
  }

  /** What a follow-up continues from: the snapshot and exact tokens on the same model, else the stored items. */
  private history(prevId: string, tenant: string, model: string): ConversationHistory {
    const store = this.deps.store;
    const prev = store.get(prevId, tenant);
    if (!prev) throw new InvalidRequestError(`Previous response with id '${prevId}' not found.`, 'previous_response_id', 'previous_response_not_found');
    if (prev.status === 'in_progress') throw new InvalidRequestError(`Previous response with id '${prevId}' is still in progress.`, 'previous_response_id');
    const chain = store.chain(prevId, tenant);
    const calls = callNames(chain);
    if (prev.model === model && prev.contextTokens) return { snapshot: snapshotName(prev.id), tokens: prev.contextTokens, messages: [], calls };
    return { snapshot: null, tokens: null, messages: chainMessages(chain), calls };
  }

  private record(run: ResponseRun, status: StoredResponse['status'], response: Record<string, unknown>, tokens: number[] | null): void {
    const { input, tenant } = run;
    const body = input.body;
    const evicted = this.deps.store.put({
      id: input.id,
      tenant,
      model: input.model,
      createdAt: input.created,
      status,
      previousResponseId: body.previous_response_id ?? null,
      response,
      inputItems: inputItems(body, input.id),
      outputItems: response.output as Item[],
      contextTokens: tokens,
    });
    // Responses deleted to keep the tenant within its storage quota take their KV snapshots with them.
    for (const old of evicted) for (const model of this.deps.rt().engines.keys()) this.deps.rt().snapshots.drop(model, tenant, snapshotName(old));
  }
}
