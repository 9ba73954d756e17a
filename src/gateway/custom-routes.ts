/**
 * Routes from the config's [[routes]]: each maps METHOD PATH to an inferlet
 * component that receives the request (method, path parameters, query, the
 * headers the route passes on, the JSON body) and answers with a status,
 * headers and a body, or a stream of events.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Router } from 'express';
import type { RouteConfig } from '../config.ts';
import { buildCached } from '../runtime/host/build.ts';
import type { StoredComponent } from '../runtime/host/component-store.ts';
import type { HostPort } from '../runtime/host/port.ts';
import type { RouteInput } from '../../inferlets/builtin/protocol.ts';
import { principalOf, requireModel, requireScope } from './auth.ts';
import { invokeAndRelay, type Runtime } from './invoke.ts';

export interface LoadedRoute {
  config: RouteConfig;
  component: StoredComponent;
  /** The served model it uses. */
  model: string;
}

/** Builds (a .ts source) or reads (a .wasm) each route's component. */
export async function loadRoutes(routes: RouteConfig[], root: string, host: HostPort, models: string[], cacheDir: string): Promise<LoadedRoute[]> {
  const out: LoadedRoute[] = [];
  for (const [i, r] of routes.entries()) {
    const file = resolve(root, r.inferlet);
    if (!existsSync(file)) throw new Error(`routes[${i}].inferlet: ${file} does not exist`);
    const wasm = file.endsWith('.wasm') ? file : await buildCached(file, resolve(cacheDir, 'builds'));
    const model = r.model || models[0]!;
    if (!models.includes(model)) throw new Error(`routes[${i}].model: no served model is named "${model}" (served: ${models.join(', ')})`);
    out.push({ config: r, component: await host.load(wasm), model });
  }
  return out;
}

function pick(headers: Record<string, string | string[] | undefined>, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = headers[n.toLowerCase()];
    if (v !== undefined) out[n.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

export function customRoutes(rt: () => Runtime, routes: () => LoadedRoute[]): Router {
  const router = Router();
  for (const route of routes()) {
    const { config } = route;
    const method = config.method.toLowerCase() as 'get' | 'post' | 'put' | 'patch' | 'delete';
    router[method](config.path, async (req, res) => {
      const principal = principalOf(res);
      requireScope(principal, config.scope);
      requireModel(principal, route.model, new Set(rt().engines.keys()));
      const input: RouteInput = {
        method: req.method,
        path: req.path,
        params: { ...(req.params as Record<string, string>) },
        query: { ...(req.query as Record<string, unknown>) },
        headers: pick(req.headers, config.headers),
        body: req.body ?? null,
      };
      await invokeAndRelay(rt(), res, {
        component: route.component,
        input,
        tenant: principal.tenant,
        model: route.model,
        builtin: config.reuseInstances,
        limits: {
          ...(config.maxTokens > 0 ? { tokens: config.maxTokens } : {}),
          ...(config.wallTimeS > 0 ? { wallTimeMs: config.wallTimeS * 1000 } : {}),
        },
      });
    });
  }
  return router;
}
