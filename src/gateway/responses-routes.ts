/**
 * The Responses API's routes. POST runs the built-in responses inferlet;
 * with `store` (the default) the response, its items and the conversation's
 * exact tokens go to SQLite and its KV state stays as a snapshot, so a
 * previous_response_id follow-up continues it without re-prefilling (or,
 * once the snapshot is evicted, refills the stored tokens: the same answer).
 * An `item_reference` input item stands for a stored item of the tenant, put
 * in its place before the inferlet sees the request. The logic is the
 * service's (responses-service.ts); these read the request and answer.
 */
import { Router } from 'express';
import { responseObject } from '../../inferlets/builtin/response-object.ts';
import { principalOf, requireScope } from './auth.ts';
import { responseFinishReasons } from './finish-reasons.ts';
import { invokeAndRelay } from './invoke.ts';
import { modelFor, refuseFields, type Refusals } from './openai-routes.ts';
import { sseEvent } from './relay.ts';
import type { components } from './openapi-types.ts';
import { ResponsesService, type ResponsesDeps } from './responses-service.ts';

export { chainMessages, type ResponsesDeps } from './responses-service.ts';

type CreateResponse = components['schemas']['CreateResponse'];

const UNSUPPORTED: Refusals = {
  reasoning: () => false,
  background: (v: unknown) => v === false,
  prompt: () => false,
  truncation: (v: unknown) => v === 'disabled',
};

export function responsesRoutes(deps: ResponsesDeps): Router {
  const router = Router();
  const service = new ResponsesService(deps);
  const tenantWith = (res: Parameters<typeof principalOf>[0]) => {
    const principal = principalOf(res);
    requireScope(principal, 'responses');
    return principal.tenant;
  };

  router.post('/v1/responses', async (req, res) => {
    const tenant = tenantWith(res);
    refuseFields(req.body as Record<string, unknown>, UNSUPPORTED, 'reasoning, prompts, truncation and background responses are not available yet');
    const resolved = service.resolve(req.body as CreateResponse, tenant);
    const rt = deps.rt();
    const model = modelFor(rt, res, resolved.model);
    const run = service.begin(resolved, tenant, model, { method: req.method, path: req.path });
    const body = run.input.body;
    try {
      const outcome = await invokeAndRelay(
        rt,
        res,
        {
          component: service.component,
          input: run.input,
          tenant,
          model,
          builtin: true,
          started: (inv) => service.started(run, inv),
          finishReasons: responseFinishReasons(),
          params: { ...(typeof body.max_output_tokens === 'number' ? { maxTokens: body.max_output_tokens } : {}), n: 1 },
        },
        {
          // The terminal event goes out once the response is stored, so a client may retrieve it at once.
          holdUntilResult: (e) => e.event === 'response.completed' || e.event === 'response.incomplete',
          streamError: (e, numEvents) => {
            const error = service.wasCancelled(run) ? { code: 'cancelled', message: 'The response was cancelled.', param: null } : { code: e.code, message: e.message, param: e.param };
            return sseEvent('error', JSON.stringify({ type: 'error', ...error, sequence_number: numEvents }));
          },
          onResult: (r) => service.finished(run, r),
        },
      );
      if (outcome.result === null) service.failed(run, outcome.error, outcome.disconnected);
    } catch (err) {
      service.failed(run, err);
      if (!service.wasCancelled(run)) throw err;
      // Cancelled through POST /v1/responses/{id}/cancel: the caller gets the cancelled response.
      res.json(responseObject(run.input, 'cancelled', []));
    } finally {
      service.end(run);
    }
  });

  router.get('/v1/responses/:response_id', (req, res) => {
    res.json(service.get(String(req.params.response_id), tenantWith(res)).response);
  });

  router.delete('/v1/responses/:response_id', (req, res) => {
    const id = String(req.params.response_id);
    service.delete(id, tenantWith(res));
    res.json({ id, object: 'response', deleted: true });
  });

  router.post('/v1/responses/:response_id/cancel', async (req, res) => {
    res.json(await service.cancel(String(req.params.response_id), tenantWith(res)));
  });

  router.get('/v1/responses/:response_id/input_items', (req, res) => {
    const tenant = tenantWith(res);
    const q = req.query as { after?: string; limit?: string | number; order?: 'asc' | 'desc' };
    res.json(
      service.inputItems(String(req.params.response_id), tenant, {
        ...(q.after ? { after: String(q.after) } : {}),
        ...(q.limit !== undefined ? { limit: Number(q.limit) } : {}),
        ...(q.order ? { order: q.order } : {}),
      }),
    );
  });

  return router;
}
