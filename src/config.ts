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
  model: { path: string; createIfMissing: '' | 'tiny' | 'bench'; fallbackChatTemplate: string };
  engine: {
    pageSize: number;
    kvMemoryMb: number;
    maxTokensPerStep: number;
    maxRowsPerStep: number;
    prefixCaching: boolean;
    threads: number;
  };
  inferlets: {
    workers: number;
    cacheDir: string;
    stallMs: number;
    warmInstances: number;
    memoryMb: number;
    kvPages: number;
    maxTokens: number;
    wallTimeS: number;
  };
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

/** section → key → [check, default, name in Config]. */
const SCHEMA: Record<string, Record<string, [Check, unknown, string]>> = {
  model: {
    path: [str, 'models/default', 'path'],
    create_if_missing: [oneOf('', 'tiny', 'bench'), 'tiny', 'createIfMissing'],
    fallback_chat_template: [str, '', 'fallbackChatTemplate'],
  },
  engine: {
    page_size: [positiveInt, 16, 'pageSize'],
    kv_memory_mb: [positiveInt, 256, 'kvMemoryMb'],
    max_tokens_per_step: [positiveInt, 512, 'maxTokensPerStep'],
    max_rows_per_step: [positiveInt, 256, 'maxRowsPerStep'],
    prefix_caching: [bool, true, 'prefixCaching'],
    threads: [nonNegativeInt, 0, 'threads'],
  },
  inferlets: {
    workers: [positiveInt, 2, 'workers'],
    cache_dir: [str, '.cache/components', 'cacheDir'],
    stall_ms: [positiveInt, 2000, 'stallMs'],
    warm_instances: [nonNegativeInt, 2, 'warmInstances'],
    memory_mb: [positiveInt, 256, 'memoryMb'],
    kv_pages: [nonNegativeInt, 0, 'kvPages'],
    max_tokens: [positiveInt, 1000000, 'maxTokens'],
    wall_time_s: [positiveInt, 600, 'wallTimeS'],
  },
};

export function parseConfig(text: string, source: string, root: string): Config {
  let raw: Record<string, unknown>;
  try {
    raw = parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${source}: not valid TOML: ${(err as Error).message}`);
  }
  const out: Record<string, Record<string, unknown>> = {};
  for (const key of Object.keys(raw)) {
    if (!(key in SCHEMA)) throw new ConfigError(`${source}: unknown section [${key}]; known: ${Object.keys(SCHEMA).map((k) => `[${k}]`).join(', ')}`);
  }
  for (const [section, keys] of Object.entries(SCHEMA)) {
    const given = (raw[section] ?? {}) as Record<string, unknown>;
    if (typeof given !== 'object' || Array.isArray(given)) throw new ConfigError(`${source}: [${section}] must be a table`);
    for (const key of Object.keys(given)) {
      if (!(key in keys)) throw new ConfigError(`${source}: unknown key ${section}.${key}; known: ${Object.keys(keys).map((k) => `${section}.${k}`).join(', ')}`);
    }
    out[section] = {};
    for (const [key, [check, dflt, name]] of Object.entries(keys)) {
      try {
        out[section][name] = key in given ? check(given[key], `${section}.${key}`) : dflt;
      } catch (err) {
        throw new ConfigError(`${source}: ${(err as Error).message}`);
      }
    }
  }
  return { root, ...(out as unknown as Omit<Config, 'root'>) };
}

/** Reads a config file; relative paths in it resolve against the repository root (the parent of its folder). */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  return parseConfig(text, path, resolve(dirname(resolve(path)), '..'));
}
