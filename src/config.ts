/**
 * The configuration file (TOML): parsed, checked key by key against the
 * schema below, with defaults. Every message names the offending key.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'smol-toml';

export interface Config {
  /** Directory relative paths are resolved against. */
  root: string;
  model: { path: string; name: string; createIfMissing: '' | 'tiny' | 'bench'; download: boolean; fallbackChatTemplate: string; quantize: '' | 'q4' | 'q8' };
  server: {
    host: string;
    port: number;
    maxBodyKb: number;
    dataDir: string;
    maxSnapshots: number;
    responsesMaxMbPerTenant: number;
    responsesTtlDays: number;
    /** Largest component POST /v1/inferlets takes, in MiB. */
    inferletMaxMb: number;
    /** Components one tenant may keep uploaded. */
    inferletsPerTenant: number;
    /** Runs of uploaded components one tenant may have going at once. */
    runsPerTenant: number;
    /** Events a run's replay buffer keeps for clients that attach. */
    runReplayEvents: number;
    apiKeyEnv: string;
  };
  keys: KeyConfig[];
  routes: RouteConfig[];
  engine: {
    pageSize: number;
    kvMemoryMb: number;
    maxTokensPerStep: number;
    maxRowsPerStep: number;
    prefixCaching: boolean;
    threads: number;
    spinWait: boolean;
    /** The engines and the inferlet host on a thread of their own (`pie serve`). */
    ownThread: boolean;
    grammarCacheSize: number;
    grammarCompileTimeoutMs: number;
    snapshotPagesPerTenant: number;
    queueTimeoutMs: number;
  };
  inferlets: {
    workers: number;
    cacheDir: string;
    stallMs: number;
    cancelGraceMs: number;
    messageMaxKb: number;
    messagesMaxMbPerTenant: number;
    queuesPerTenant: number;
    messageTtlS: number;
    warmInstances: number;
    quarantineS: number;
    memoryMb: number;
    kvPages: number;
    maxTokens: number;
    wallTimeS: number;
  };
  metrics: {
    /** "pie": our names; "vllm": vLLM's names and model_name label, for a dashboard built for vLLM. */
    names: 'pie' | 'vllm';
  };
}

/** An API key and what it may do. */
export interface KeyConfig {
  /** The key itself, or '' when it comes from the environment variable `keyEnv`. */
  key: string;
  keyEnv: string;
  /** Snapshots, stored responses and messages are scoped to the tenant ("": a tenant of the key's own). */
  tenant: string;
  /** Route scopes it may call ("chat", "completions", "responses", "metrics", "inferlets", a custom route's scope), or "*"; "admin" (named) for every tenant's uploads. */
  scopes: string[];
  /** Models it may use, or "*". */
  models: string[];
  /** Its tenant's weight in the KV pool under contention (keys of one tenant must agree). */
  kvWeight: number;
  /** Most KV pages its tenant's running work may hold together (0: no cap). */
  kvPages: number;
}

/** A custom route served by an inferlet. */
export interface RouteConfig {
  method: string;
  /** An Express path, with `:name` parameters. */
  path: string;
  /** A TypeScript source (built at start) or a .wasm component, relative to the root. */
  inferlet: string;
  /** Served model it uses ('' for the first one). */
  model: string;
  /** The scope a key needs to call it. */
  scope: string;
  /** Request headers passed to the inferlet (lower case). */
  headers: string[];
  /** Per-invocation limits; 0 keeps the [inferlets] default. */
  maxTokens: number;
  wallTimeS: number;
  /** Run invocations on instances earlier ones finished with (only for inferlets that keep no module state between runs). */
  reuseInstances: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Check = (v: unknown, key: string) => unknown;
const positiveInt: Check = (v, key) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ConfigError(`${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
};
const nonNegativeInt: Check = (v, key) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ConfigError(`${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return v;
};
const positiveNumber: Check = (v, key) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(`${key} must be a positive number, got ${JSON.stringify(v)}`);
  return v;
};
const bool: Check = (v, key) => {
  if (typeof v !== 'boolean') throw new ConfigError(`${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
};
const str: Check = (v, key) => {
  if (typeof v !== 'string') throw new ConfigError(`${key} must be a string, got ${JSON.stringify(v)}`);
  return v;
};
const oneOf =
  (...allowed: string[]): Check =>
  (v, key) => {
    if (typeof v !== 'string' || !allowed.includes(v)) throw new ConfigError(`${key} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(v)}`);
    return v;
  };

const strings: Check = (v, key) => {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ConfigError(`${key} must be a list of strings, got ${JSON.stringify(v)}`);
  return v;
};
const port: Check = (v, key) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535) throw new ConfigError(`${key} must be a port number (0..65535), got ${JSON.stringify(v)}`);
  return v;
};
const method: Check = (v, key) => oneOf('GET', 'POST', 'PUT', 'PATCH', 'DELETE')(typeof v === 'string' ? v.toUpperCase() : v, key);
const routePath: Check = (v, key) => {
  if (typeof v !== 'string' || !v.startsWith('/') || /\s/.test(v)) throw new ConfigError(`${key} must be a path starting with "/", got ${JSON.stringify(v)}`);
  return v;
};
const required: Check = (v, key) => {
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${key} is required`);
  return v;
};

type Schema = Record<string, [Check, unknown, string]>;

/** section → key → [check, default, name in Config]. */
const SCHEMA: Record<string, Schema> = {
  model: {
    path: [str, 'models/default', 'path'],
    name: [str, '', 'name'],
    create_if_missing: [oneOf('', 'tiny', 'bench'), 'tiny', 'createIfMissing'],
    download: [bool, false, 'download'],
    fallback_chat_template: [str, '', 'fallbackChatTemplate'],
    quantize: [oneOf('', 'q4', 'q8'), '', 'quantize'],
  },
  engine: {
    page_size: [positiveInt, 16, 'pageSize'],
    kv_memory_mb: [positiveInt, 256, 'kvMemoryMb'],
    max_tokens_per_step: [positiveInt, 512, 'maxTokensPerStep'],
    max_rows_per_step: [positiveInt, 256, 'maxRowsPerStep'],
    prefix_caching: [bool, true, 'prefixCaching'],
    threads: [nonNegativeInt, 0, 'threads'],
    spin_wait: [bool, true, 'spinWait'],
    own_thread: [bool, true, 'ownThread'],
    grammar_cache_size: [positiveInt, 128, 'grammarCacheSize'],
    grammar_compile_timeout_ms: [positiveInt, 1000, 'grammarCompileTimeoutMs'],
    snapshot_pages_per_tenant: [nonNegativeInt, 0, 'snapshotPagesPerTenant'],
    queue_timeout_ms: [positiveInt, 30000, 'queueTimeoutMs'],
  },
  inferlets: {
    workers: [positiveInt, 2, 'workers'],
    cache_dir: [str, '.cache/components', 'cacheDir'],
    stall_ms: [positiveInt, 2000, 'stallMs'],
    cancel_grace_ms: [positiveInt, 2000, 'cancelGraceMs'],
    quarantine_s: [nonNegativeInt, 600, 'quarantineS'],
    message_max_kb: [positiveInt, 1024, 'messageMaxKb'],
    messages_max_mb_per_tenant: [positiveInt, 64, 'messagesMaxMbPerTenant'],
    queues_per_tenant: [positiveInt, 1024, 'queuesPerTenant'],
    message_ttl_s: [positiveInt, 600, 'messageTtlS'],
    warm_instances: [nonNegativeInt, 2, 'warmInstances'],
    memory_mb: [positiveInt, 256, 'memoryMb'],
    kv_pages: [nonNegativeInt, 0, 'kvPages'],
    max_tokens: [positiveInt, 1000000, 'maxTokens'],
    wall_time_s: [positiveInt, 600, 'wallTimeS'],
  },
  server: {
    host: [str, '127.0.0.1', 'host'],
    port: [port, 8080, 'port'],
    max_body_kb: [positiveInt, 4096, 'maxBodyKb'],
    data_dir: [str, 'data', 'dataDir'],
    max_snapshots: [nonNegativeInt, 1024, 'maxSnapshots'],
    responses_max_mb_per_tenant: [positiveInt, 1024, 'responsesMaxMbPerTenant'],
    responses_ttl_days: [positiveInt, 30, 'responsesTtlDays'],
    inferlet_max_mb: [positiveInt, 32, 'inferletMaxMb'],
    inferlets_per_tenant: [positiveInt, 100, 'inferletsPerTenant'],
    runs_per_tenant: [positiveInt, 64, 'runsPerTenant'],
    run_replay_events: [positiveInt, 4096, 'runReplayEvents'],
    api_key_env: [str, 'PIE_API_KEY', 'apiKeyEnv'],
  },
  metrics: {
    names: [oneOf('pie', 'vllm'), 'pie', 'names'],
  },
};

/** Arrays of tables ([[keys]], [[routes]]): key → [check, default (undefined: required), name]. */
const LISTS: Record<string, Schema> = {
  keys: {
    key: [str, '', 'key'],
    key_env: [str, '', 'keyEnv'],
    tenant: [str, '', 'tenant'],
    scopes: [strings, ['*'], 'scopes'],
    models: [strings, ['*'], 'models'],
    kv_weight: [positiveNumber, 1, 'kvWeight'],
    kv_pages: [nonNegativeInt, 0, 'kvPages'],
  },
  routes: {
    method: [method, 'POST', 'method'],
    path: [routePath, undefined, 'path'],
    inferlet: [required, undefined, 'inferlet'],
    model: [str, '', 'model'],
    scope: [str, 'custom', 'scope'],
    headers: [strings, [], 'headers'],
    max_tokens: [nonNegativeInt, 0, 'maxTokens'],
    wall_time_s: [nonNegativeInt, 0, 'wallTimeS'],
    reuse_instances: [bool, false, 'reuseInstances'],
  },
};

function readTable(given: Record<string, unknown>, keys: Schema, where: string): Record<string, unknown> {
  for (const key of Object.keys(given)) {
    if (!(key in keys)) throw new ConfigError(`unknown key ${where}.${key}; known: ${Object.keys(keys).map((k) => `${where}.${k}`).join(', ')}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, [check, dflt, name]] of Object.entries(keys)) {
    if (key in given) out[name] = check(given[key], `${where}.${key}`);
    else if (dflt === undefined) throw new ConfigError(`${where}.${key} is required`);
    else out[name] = dflt;
  }
  return out;
}

export function parseConfig(text: string, source: string, root: string): Config {
  let raw: Record<string, unknown>;
  try {
    raw = parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${source}: not valid TOML: ${(err as Error).message}`);
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(raw)) {
    if (!(key in SCHEMA) && !(key in LISTS)) {
      const known = [...Object.keys(SCHEMA).map((k) => `[${k}]`), ...Object.keys(LISTS).map((k) => `[[${k}]]`)];
      throw new ConfigError(`${source}: unknown section [${key}]; known: ${known.join(', ')}`);
    }
  }
  try {
    for (const [section, keys] of Object.entries(SCHEMA)) {
      const given = raw[section] ?? {};
      if (typeof given !== 'object' || Array.isArray(given)) throw new ConfigError(`[${section}] must be a table`);
      out[section] = readTable(given as Record<string, unknown>, keys, section);
    }
    for (const [section, keys] of Object.entries(LISTS)) {
      const given = raw[section] ?? [];
      if (!Array.isArray(given)) throw new ConfigError(`${section} must be an array of tables ([[${section}]])`);
      out[section] = given.map((t, i) => readTable(t as Record<string, unknown>, keys, `${section}[${i}]`));
    }
    checkKeys(out.keys as KeyConfig[]);
    (out.routes as RouteConfig[]).forEach((r, i) => {
      // "admin" is a key's power over every tenant's uploads, not a route's: a key given it for a route would get that too.
      if (r.scope === 'admin' || r.scope === '*') throw new ConfigError(`routes[${i}].scope may not be "${r.scope}": name the route's own scope`);
    });
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${source}: ${err.message}`);
    throw err;
  }
  return { root, ...(out as unknown as Omit<Config, 'root'>) };
}

function checkKeys(keys: KeyConfig[]): void {
  keys.forEach((k, i) => {
    if ((k.key === '') === (k.keyEnv === '')) throw new ConfigError(`keys[${i}] needs exactly one of key or key_env`);
  });
}

/** Reads a config file; relative paths in it resolve against the folder the file is in. */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  return parseConfig(text, path, dirname(resolve(path)));
}
