/**
 * API keys: `Authorization: Bearer KEY`, each key with a tenant and scopes
 * (which routes and which models). A key that names no tenant has one of its
 * own, never another key's. With no key configured every request runs as the
 * "default" tenant with every scope, and the server stays on loopback. A
 * request that reached a route without a principal is refused, never opened.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ConfigError, type KeyConfig } from '../config.ts';
import type { TenantShare } from '../engine/index.ts';
import { AuthenticationError, ModelNotFoundError, PermissionDeniedError } from './errors.ts';

export interface Principal {
  tenant: string;
  /** Route scopes, or null for all. */
  scopes: ReadonlySet<string> | null;
  /** Models, or null for all. */
  models: ReadonlySet<string> | null;
  /** Sees and runs every tenant's uploaded components: the "admin" scope, named on its own ("*" does not give it). */
  admin: boolean;
}

export interface ApiKey extends Principal {
  digest: Buffer;
  /** Its tenant's share of the KV pool (none: whatever its tenant's other keys give it). */
  share: TenantShare | null;
}

/** Without keys: one user on loopback, with every scope. */
export const OPEN: Principal = { tenant: 'default', scopes: null, models: null, admin: true };

const digest = (key: string) => createHash('sha256').update(key).digest();

const set = (items: string[]): ReadonlySet<string> | null => (items.includes('*') ? null : new Set(items));

/** Keys from the config (literal or from an environment variable) plus one full-scope key from `envVar`, if set. */
export function resolveKeys(keys: KeyConfig[], env: NodeJS.ProcessEnv, envVar: string): ApiKey[] {
  const out: ApiKey[] = [];
  for (const [i, k] of keys.entries()) {
    const value = k.key || env[k.keyEnv];
    if (!value) throw new Error(`keys[${i}]: the environment variable ${k.keyEnv} is not set`);
    const d = digest(value);
    // Its own tenant, stable for as long as the key is the same.
    const share = { weight: k.kvWeight ?? 1, maxPages: k.kvPages ? k.kvPages : Infinity };
    out.push({ digest: d, tenant: k.tenant || `key-${d.toString('hex').slice(0, 16)}`, scopes: set(k.scopes), models: set(k.models), admin: k.scopes.includes('admin'), share });
  }
  const fromEnv = envVar ? env[envVar] : undefined;
  if (fromEnv) out.push({ digest: digest(fromEnv), tenant: 'default', scopes: null, models: null, admin: true, share: null });
  return out;
}

/** Each tenant's share of the KV pool, from its keys (which must agree). */
export function tenantShares(keys: readonly ApiKey[]): Map<string, TenantShare> {
  const out = new Map<string, TenantShare>();
  for (const k of keys) {
    if (!k.share) continue;
    const seen = out.get(k.tenant);
    if (seen && (seen.weight !== k.share.weight || seen.maxPages !== k.share.maxPages)) {
      throw new ConfigError(`the keys of tenant "${k.tenant}" give it different kv_weight or kv_pages: give every key of a tenant the same`);
    }
    out.set(k.tenant, k.share);
  }
  return out;
}

/** Authenticates the bearer key; the principal goes to `res.locals.principal`. */
export function auth({ keys }: { keys: ApiKey[] }): RequestHandler {
  return function authenticate(req: Request, res: Response, next: NextFunction): void {
    if (keys.length === 0) {
      res.locals.principal = OPEN;
      return next();
    }
    const header = req.get('authorization') ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return next(new AuthenticationError('You did not provide an API key. Send it as "Authorization: Bearer YOUR_KEY".'));
    const d = digest(m[1]!);
    const found = keys.find((k) => timingSafeEqual(k.digest, d));
    if (!found) return next(new AuthenticationError('Incorrect API key provided.'));
    res.locals.principal = found;
    next();
  };
}

export function principalOf(res: Response): Principal {
  const p = res.locals.principal as Principal | undefined;
  if (!p) throw new AuthenticationError('This request was not authenticated.');
  return p;
}

/** Throws 403 unless the principal has the scope. */
export function requireScope(p: Principal, scope: string): void {
  if (p.scopes && !p.scopes.has(scope)) throw new PermissionDeniedError(`This API key does not have the "${scope}" scope.`);
}

/** Whether the principal may use the model (others' models look like they do not exist). */
export function mayUseModel(p: Principal, model: string): boolean {
  return !p.models || p.models.has(model);
}

export function requireModel(p: Principal, model: string, served: ReadonlySet<string>): void {
  if (!served.has(model) || !mayUseModel(p, model)) throw new ModelNotFoundError(model);
}
