/**
 * The ABI's three descriptions agree: every function of the WIT has exactly
 * one implementation among a guest's imports (no more, no fewer), every
 * operation of ops.ts is sent from exactly one place of the guest side and
 * answered by exactly one handler of the host side. And the guest side runs
 * without the engine or the driver: a guest worker starts with those modules
 * made unloadable.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../test/helpers.ts';
import { INTERFACES } from './abi.ts';
import type { GuestEnv } from './guest/env.ts';
import { guestImports } from './guest/imports.ts';
import { HANDLERS } from './host/handlers/index.ts';
import { OP_NAMES } from './ops.ts';
import { HEARTBEAT } from './protocol.ts';

const camel = (kebab: string) => kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const pascal = (kebab: string) => camel(kebab).replace(/^[a-z]/, (c) => c.toUpperCase());

/** Each interface's functions as jco names them: `fn` for a free function, `Class`, `Class.static`, `Class#method` for a resource. */
function witFunctions(): Map<string, string[]> {
  const wit = readFileSync(join(REPO_ROOT, 'wit/inferlet.wit'), 'utf8').replace(/\/\/.*$/gm, '');
  const out = new Map<string, string[]>();
  for (const m of wit.matchAll(/^interface ([a-z-]+) \{([\s\S]*?)^\}/gm)) {
    const names: string[] = [];
    const body = m[2]!;
    // Resources first (their bodies hold methods), then what is left at the interface's level.
    const rest = body.replace(/resource ([a-z-]+) \{([\s\S]*?)\n {2}\}/g, (_, name: string, inner: string) => {
      const cls = pascal(name);
      names.push(cls);
      for (const f of inner.matchAll(/^\s*([a-z-]+): (static )?func/gm)) names.push(f[2] ? `${cls}.${camel(f[1]!)}` : `${cls}#${camel(f[1]!)}`);
      return '';
    });
    for (const f of rest.matchAll(/^\s*([a-z-]+): func/gm)) names.push(camel(f[1]!));
    out.set(m[1]!, names.sort());
  }
  return out;
}

/** What a guest's imports implement, named as witFunctions names them. */
function implemented(obj: object): string[] {
  const names: string[] = [];
  for (const [key, value] of Object.entries(obj)) {
    if (typeof value !== 'function') continue;
    if (!/^[A-Z]/.test(key)) {
      names.push(key);
      continue;
    }
    names.push(key);
    const cls = value as { prototype: object };
    for (const s of Object.getOwnPropertyNames(cls)) if (!['length', 'name', 'prototype'].includes(s) && typeof (cls as Record<string, unknown>)[s] === 'function') names.push(`${key}.${s}`);
    for (const p of Object.getOwnPropertyNames(cls.prototype)) if (p !== 'constructor') names.push(`${key}#${p}`);
  }
  return names.sort();
}

describe('the ABI table', () => {
  it("implements every function of the WIT exactly once among a guest's imports, and nothing else", () => {
    const env = { models: new Map(), call: async () => undefined, send: () => {}, handle: () => 1 } as unknown as GuestEnv;
    const imports = guestImports(env);
    const wit = witFunctions();
    expect([...wit.keys()].sort()).toEqual([...INTERFACES].sort());
    // jco keeps a resource's private helpers out of the WIT: the guest's own private statics are not imports.
    const privateHelpers = new Set(['Matcher.create']);
    for (const name of INTERFACES) {
      expect(implemented(imports[name]).filter((n) => !privateHelpers.has(n)), name).toEqual(wit.get(name));
    }
  });

  it('sends every operation from exactly one place of the guest side, and answers each with exactly one handler', () => {
    const dir = join(REPO_ROOT, 'src/runtime/guest');
    const sites = new Map<string, number>();
    for (const f of readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))) {
      for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/(?:env|this)\.(?:call|send)\('([a-z-]+\.[a-z-]+)'/g)) sites.set(m[1]!, (sites.get(m[1]!) ?? 0) + 1);
    }
    expect([...sites.keys()].sort()).toEqual([...OP_NAMES].sort());
    for (const [op, n] of sites) expect(n, op).toBe(1);
    expect(Object.keys(HANDLERS).sort()).toEqual([...OP_NAMES].sort());
  });

  it('starts a guest worker with the engine, the driver, ONNX Runtime and xgrammar made unloadable', async () => {
    // A worker that refuses those modules, then loads the real guest worker: it must come up and say ready.
    const refuse = String.raw`
      const { registerHooks } = require('node:module');
      registerHooks({
        resolve(specifier, context, next) {
          const r = next(specifier, context);
          if (/\/src\/engine\/|\/drivers\/|onnxruntime|web-xgrammar/.test(r.url)) throw new Error('unloadable in a guest worker: ' + r.url);
          return r;
        },
      });
      const { workerData } = require('node:worker_threads');
      import(workerData.entry).catch((err) => { throw err; });
    `;
    const heartbeat = new SharedArrayBuffer(HEARTBEAT.size * 4);
    const entry = new URL('./guest/worker.ts', import.meta.url).href;
    const worker = new Worker(refuse, { eval: true, workerData: { heartbeat, entry } });
    try {
      const first = await new Promise<unknown>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`the guest worker exited with code ${code}`)));
      });
      expect(first).toEqual({ t: 'ready' });
    } finally {
      await worker.terminate();
    }
  });
});
