/** Starting the engines, the inferlet host and the snapshot keeper from the configuration file: shared by the CLI, the gateway and the engine thread. */
import { resolve } from 'node:path';
import { byteProgress, type Progress } from './cli/progress.ts';
import { ConfigError, type Config } from './config.ts';
import { startEngine, type Engine, type TenantShare } from './engine/index.ts';
import { quantizationFor } from './model/config.ts';
import { describeQuantization } from './model/weights.ts';
import { defaultModel } from './model/default-model.ts';
import type { DownloadOptions } from './model/hub/download.ts';
import { resolveModelSource } from './model/hub/resolve.ts';
import { InferletHost } from './runtime/host/host.ts';
import type { EngineSide } from './runtime/host/port.ts';
import { SnapshotKeeper } from './runtime/host/snapshot-keeper.ts';

/**
 * Starts an engine on `modelDir` (or the config's model). Its served name is
 * `name`, else the config's [model] name for the config's own model, else the
 * hub repository's name for a hub model, else the directory's name.
 */
export async function engineFromConfig(config: Config, modelDir: string | undefined, log: (line: string) => void, name?: string): Promise<Engine> {
  // A folder, or a hub repository (ORG/NAME[:REVISION]) from the cache, downloaded when model.download allows.
  const hub = { download: config.model.download, hub: downloadProgress(log) };
  const source = modelDir ? await resolveModelSource(modelDir, hub) : await defaultModel(config, log, hub);
  const dir = source.dir;
  const servedName = name || (modelDir ? source.name : config.model.name || source.name || undefined);
  const e = config.engine;
  const engine = await startEngine(dir, {
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
    quantize: config.model.quantize ? quantizationFor(config.model.quantize) : null,
    ...(servedName ? { name: servedName } : {}),
  });
  const stored = engine.model.config.quantization;
  if (config.model.quantize && stored) log(`pie: ${engine.model.name} is stored quantized (${describeQuantization(stored)}) and loads as stored; quantize = "${config.model.quantize}" applies to float models`);
  return engine;
}

/** A download's progress as log lines (the engine may load on a thread of its own, with no terminal). */
function downloadProgress(log: (line: string) => void): DownloadOptions {
  let progress: Progress | null = null;
  return {
    onPlan: (files) => (progress = byteProgress('pie: downloading', { tty: false, write: log })).plan(files.map((f) => ({ name: f.path, size: f.size, done: f.cached }))),
    onProgress: (file, done) => progress?.update(file, done),
    onDone: () => progress?.stop(),
  };
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

export interface EngineSideOptions {
  config: Config;
  /** Model directories, each optionally `NAME=DIR` (default: the config's model). */
  models?: string[];
  /** Engines already started (tests): served instead of `models`, and left open by close(). */
  engines?: Engine[];
  /** Tenants' shares of the KV pool (from the keys). */
  shares?: ReadonlyMap<string, Partial<TenantShare>>;
  /** How many tenants the keys name. */
  tenants?: number;
  log: (line: string) => void;
}

/** The engines, the inferlet host and the snapshot keeper, on this thread. */
export interface LocalEngineSide extends EngineSide {
  engines: Engine[];
  host: InferletHost;
  snapshots: SnapshotKeeper;
}

/** Starts the engine side on this thread: the engine thread runs this, and so do tests and `pie serve` with `[engine] thread = false`. */
export async function startEngineSide(options: EngineSideOptions): Promise<LocalEngineSide> {
  const { config, log } = options;
  const engines: Engine[] = [...(options.engines ?? [])];
  const own = options.engines ? [] : engines;
  try {
    for (const spec of options.engines ? [] : options.models?.length ? options.models : [undefined]) {
      const eq = spec?.indexOf('=') ?? -1;
      const [name, dir] = spec && eq > 0 ? [spec.slice(0, eq), spec.slice(eq + 1)] : [undefined, spec];
      engines.push(await engineFromConfig(config, dir, log, name));
    }
    const names = engines.map((e) => e.model.name);
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice) throw new ConfigError(`two models would be served as "${twice}": name them with --model NAME=DIR`);
    if (options.shares) for (const e of engines) e.setTenantShares(options.shares);
    const host = await hostFromConfig(config, engines, log, options.tenants ?? 1);
    const snapshots = new SnapshotKeeper(config.server.maxSnapshots, engines);
    return {
      engines,
      host,
      models: engines,
      snapshots,
      async close() {
        await host.close();
        snapshots.close();
        for (const e of own) await e.close();
      },
    };
  } catch (err) {
    for (const e of own) await e.close().catch(() => {});
    throw err;
  }
}
