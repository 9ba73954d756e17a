/**
 * Components as a resource (scope "inferlets"): upload, list, retrieve and
 * delete. An upload is checked and transpiled on the component loader's
 * thread (world and imports, naming any import refused), then kept by
 * content hash in the data folder (inferlet-registry.ts). A tenant sees only
 * its own; a key with the "admin" scope sees every tenant's. Another tenant's
 * component answers 404, as one that does not exist.
 *
 *   POST   /v1/inferlets?name=&version=   application/wasm body → 201 (200: these bytes were there)
 *   GET    /v1/inferlets?name=&sha256=    the list (an admin's: every tenant's)
 *   GET    /v1/inferlets/{id}
 *   DELETE /v1/inferlets/{id}
 */
import { createHash } from 'node:crypto';
import express, { Router, type RequestHandler, type Response } from 'express';
import { ComponentLoadError } from '../runtime/host/component-store.ts';
import type { ComponentLoader } from '../runtime/host/component-loader.ts';
import { principalOf, requireScope, type Principal } from './auth.ts';
import { ApiError, InvalidRequestError, NotFoundError } from './errors.ts';
import type { InferletRegistry, UploadedInferlet } from './inferlet-registry.ts';
import { newId, unixNow } from './invoke.ts';

export interface InferletLimits {
  /** Largest component taken, in bytes. */
  maxBytes: number;
  /** Components one tenant may keep. */
  perTenant: number;
}

export interface InferletDeps {
  registry: InferletRegistry;
  loader: ComponentLoader;
  limits: InferletLimits;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The API's object for an upload. */
export function inferletObject(e: UploadedInferlet): Record<string, unknown> {
  return { id: e.id, object: 'inferlet', name: e.name, version: e.version, sha256: e.sha256, bytes: e.bytes, imports: e.imports, created_at: e.createdAt, owned_by: e.tenant };
}

/** The caller's principal, once it has the "inferlets" scope. */
export function inferletsPrincipal(res: Response): Principal {
  const p = principalOf(res);
  requireScope(p, 'inferlets');
  return p;
}

/** An upload the principal may see, by id or (its own) by name; 404 otherwise. */
export function visibleInferlet(registry: InferletRegistry, p: Principal, ref: string): UploadedInferlet {
  const e = ref.startsWith('inf_') ? registry.get(ref) : registry.byName(p.tenant, ref);
  if (!e || (e.tenant !== p.tenant && !p.admin)) throw new NotFoundError(`No inferlet found with id or name '${ref}'.`, 'not_found', 'inferlet_id');
  return e;
}

function optionalName(v: unknown, param: string): string | null {
  if (v === undefined || v === '') return null;
  if (typeof v !== 'string' || !NAME.test(v) || v.startsWith('inf_')) {
    throw new InvalidRequestError(`${param} must be 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit (and not with "inf_"), got ${JSON.stringify(v)}`, param);
  }
  return v;
}

/** `forget`: told the bytes of a deleted upload that no other upload uses (the host drops what it keeps for them). */
export function inferletRoutes(deps: InferletDeps, forget: (sha256: string) => void = () => {}): Router {
  const { registry, loader, limits } = deps;
  const router = Router();

  // The scope is checked before the body is read: a key without it sends nothing big.
  const scoped: RequestHandler = (_req, res, next) => (inferletsPrincipal(res), next());
  router.post('/v1/inferlets', scoped, express.raw({ type: () => true, limit: limits.maxBytes }), async (req, res) => {
    const p = inferletsPrincipal(res);
    const type = (req.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/wasm' && type !== 'application/octet-stream') {
      throw new InvalidRequestError(`Send the component's bytes as the body, with Content-Type: application/wasm (got ${JSON.stringify(type || 'none')}).`, null, 'invalid_content_type');
    }
    const name = optionalName(req.query.name, 'name');
    const version = optionalName(req.query.version, 'version');
    if (version !== null && name === null) throw new InvalidRequestError('A version needs a name.', 'version');
    const bytes = req.body instanceof Buffer ? new Uint8Array(req.body.buffer, req.body.byteOffset, req.body.byteLength) : new Uint8Array();
    if (bytes.length === 0) throw new InvalidRequestError('The body is empty: send the component as application/wasm.', null, 'invalid_component');
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const had = registry.byHash(p.tenant, sha256);
    if (had) return void res.status(200).json(inferletObject(had));
    /** Refuses an upload past the tenant's count, or of a name and version taken (checked before the work, and again right before it is recorded). */
    const refuse = () => {
      if (registry.count(p.tenant) >= limits.perTenant) {
        throw new ApiError(409, 'invalid_request_error', `This tenant keeps ${limits.perTenant} inferlets, the most it may; delete one (DELETE /v1/inferlets/{id}) first.`, { code: 'inferlet_limit_reached' });
      }
      const same = name !== null && version !== null ? registry.byName(p.tenant, name, version) : null;
      if (same) throw new ApiError(409, 'invalid_request_error', `An inferlet named ${name} at version ${version} exists (${same.id}) with other bytes; give another version, or delete it first.`, { code: 'inferlet_exists', param: 'version' });
    };
    refuse();
    let imports: string[];
    try {
      imports = (await loader.load(bytes)).imports;
    } catch (err) {
      if (err instanceof ComponentLoadError) throw new InvalidRequestError(err.message, null, 'invalid_component');
      throw err;
    }
    // Checked again after the wait: other uploads of the tenant's may have landed meanwhile.
    const raced = registry.byHash(p.tenant, sha256);
    if (raced) return void res.status(200).json(inferletObject(raced));
    refuse();
    const entry: UploadedInferlet = { id: newId('inf_'), tenant: p.tenant, name, version, sha256, bytes: bytes.length, imports, createdAt: unixNow() };
    registry.add(entry, bytes);
    res.status(201).json(inferletObject(entry));
  });

  router.get('/v1/inferlets', (req, res) => {
    const p = inferletsPrincipal(res);
    const name = typeof req.query.name === 'string' ? req.query.name : null;
    const sha256 = typeof req.query.sha256 === 'string' ? req.query.sha256.toLowerCase() : null;
    const data = registry
      .list(p.admin ? null : p.tenant)
      .filter((e) => (name === null || e.name === name) && (sha256 === null || e.sha256 === sha256))
      .map(inferletObject);
    res.json({ object: 'list', data });
  });

  router.get('/v1/inferlets/:inferlet_id', (req, res) => {
    res.json(inferletObject(visibleInferlet(registry, inferletsPrincipal(res), String(req.params.inferlet_id))));
  });

  router.delete('/v1/inferlets/:inferlet_id', (req, res) => {
    const e = visibleInferlet(registry, inferletsPrincipal(res), String(req.params.inferlet_id));
    if (registry.delete(e)) forget(e.sha256);
    res.json({ id: e.id, object: 'inferlet', deleted: true });
  });

  return router;
}
