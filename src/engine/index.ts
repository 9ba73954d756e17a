/**
 * The engine's front door: everything outside src/engine (the CLI, the
 * inferlet runtime, the gateway, benchmarks) imports from here and from
 * nowhere else inside the engine.
 */
import type { Driver } from '../../drivers/driver.ts';
import { PortableDriver } from '../../drivers/portable/driver.ts';
import { kvDim, type WeightQuantization } from '../model/config.ts';
import { loadModel, type LoadedModel } from '../model/load.ts';
import { Engine, type EngineOptions } from './engine.ts';

export { Engine } from './engine.ts';
export type { EngineOptions, EngineStats, ForwardOptions, ForwardResult, ScoredToken, StepStats } from './engine.ts';
export type { Context } from './context.ts';
export type { TenantShare } from './scheduler.ts';
export { Generation } from './generation.ts';
export type { FinishReason, GenerateOptions, GenerationChunk, GenerationResult, TokenLogprob } from './generation.ts';
export { logSumExp, Sampler, TokenHistory, topK } from './sampler.ts';
export type { SampleResult, SamplingParams, TokenMask, TopLogprob } from './sampler.ts';
export { IncrementalDecoder } from './detokenizer.ts';
export { StopMatcher } from './stop-matcher.ts';
export { EngineError } from './errors.ts';
export { Grammar, GrammarError, Grammars } from './grammar/grammars.ts';
export type { GrammarsOptions, GrammarStats } from './grammar/grammars.ts';
export { Matcher } from './grammar/matcher.ts';
export type { GrammarSource } from './grammar/source.ts';
export { loadModel } from '../model/load.ts';
export type { LoadedModel } from '../model/load.ts';

export interface StartOptions extends EngineOptions {
  /** Tokens per KV page. Default 16. */
  pageSize?: number;
  /** Bytes of KV cache to allocate (all layers, keys and values). Default 256 MiB. */
  kvMemoryBytes?: number;
  /** Or the exact number of pages (wins over kvMemoryBytes). */
  numPages?: number;
  /** ONNX Runtime threads (default: its own choice, one per core). */
  threads?: number;
  /** Let ONNX Runtime's threads spin between runs (default true, ONNX Runtime's own). */
  spinWait?: boolean;
  /** A driver to use instead of the portable one (tests use the mock driver). */
  driver?: (model: LoadedModel, numPages: number, pageSize: number) => Promise<Driver>;
  /** Served name of the model (default: the directory's name). */
  name?: string;
  fallbackChatTemplate?: string;
  /** Quantize the float weights as they load (src/model/quantize.ts). */
  quantize?: WeightQuantization | null;
}

/** Bytes of KV cache one token takes in this model (float32, all layers, keys and values). */
export function kvBytesPerToken(model: LoadedModel): number {
  return model.config.numLayers * 2 * kvDim(model.config) * 4;
}

export function pagesForBudget(model: LoadedModel, pageSize: number, bytes: number): number {
  return Math.max(1, Math.floor(bytes / (pageSize * kvBytesPerToken(model))));
}

/** Loads a model directory and starts an engine on it. */
export async function startEngine(modelDir: string | LoadedModel, options: StartOptions = {}): Promise<Engine> {
  const model = typeof modelDir === 'string' ? loadModel(modelDir, { name: options.name, fallbackChatTemplate: options.fallbackChatTemplate, quantize: options.quantize }) : modelDir;
  const pageSize = options.pageSize ?? 16;
  const numPages = options.numPages ?? pagesForBudget(model, pageSize, options.kvMemoryBytes ?? 256 * 1024 * 1024);
  const driver = options.driver
    ? await options.driver(model, numPages, pageSize)
    : await PortableDriver.create(model, { numPages, pageSize, threads: options.threads, spinWait: options.spinWait });
  return new Engine(model, driver, options);
}
