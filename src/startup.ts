/** Starting the engine and the inferlet host from the configuration file: shared by the CLI and the gateway. */
import { resolve } from 'node:path';
import type { Config } from './config.ts';
import { startEngine, type Engine } from './engine/index.ts';
import { ensureDefaultModel } from './model/default-model.ts';
import { InferletHost } from './runtime/host/host.ts';

/**
 * Starts an engine on `modelDir` (or the config's model). Its served name is
 * `name`, else the config's [model] name for the config's own model, else the
 * directory's name.
 */
export async function engineFromConfig(config: Config, modelDir: string | undefined, log: (line: string) => void, name?: string): Promise<Engine> {
  const dir = modelDir ? resolve(modelDir) : ensureDefaultModel(config, log);
  const servedName = name || (modelDir ? undefined : config.model.name || undefined);
  const e = config.engine;
  return startEngine(dir, {
    pageSize: e.pageSize,
    kvMemoryBytes: e.kvMemoryMb * 1024 * 1024,
    maxTokensPerStep: e.maxTokensPerStep,
    maxRowsPerStep: e.maxRowsPerStep,
    prefixCaching: e.prefixCaching,
    threads: e.threads || undefined,
    spinWait: e.spinWait,
    grammars: { cacheSize: e.grammarCacheSize, compileTimeoutMs: e.grammarCompileTimeoutMs },
    ...(e.snapshotPagesPerTenant > 0 ? { snapshotPagesPerTenant: e.snapshotPagesPerTenant } : {}),
    queueTimeoutMs: e.queueTimeoutMs,
    fallbackChatTemplate: config.model.fallbackChatTemplate || undefined,
    ...(servedName ? { name: servedName } : {}),
  });
}

/** The inferlet host; `tenants` is how many tenants the keys name (quarantine only separates several). */
export function hostFromConfig(config: Config, engines: Engine[], log: (line: string) => void, tenants = 1): Promise<InferletHost> {
  const i = config.inferlets;
  return InferletHost.start({
    engines,
    workers: i.workers,
    cacheDir: resolve(config.root, i.cacheDir),
    stallMs: i.stallMs,
    cancelGraceMs: i.cancelGraceMs,
    messageLimits: {
      maxMessageChars: i.messageMaxKb * 1024,
      maxCharsPerTenant: i.messagesMaxMbPerTenant * 1024 * 1024,
      maxQueuesPerTenant: i.queuesPerTenant,
      ttlMs: i.messageTtlS * 1000,
    },
    warmInstances: i.warmInstances,
    quarantineMs: tenants > 1 ? i.quarantineS * 1000 : 0,
    limits: {
      memoryBytes: i.memoryMb * 1024 * 1024,
      ...(i.kvPages > 0 ? { kvPages: i.kvPages } : {}),
      tokens: i.maxTokens,
      wallTimeMs: i.wallTimeS * 1000,
    },
    log,
  });
}
