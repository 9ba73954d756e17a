/**
 * Loads a Hugging Face model directory: config, weights, tokenizer, chat
 * template and generation defaults. Every failure names the file and problem.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ChatTemplate, FALLBACK_CHAT_TEMPLATE, pickChatTemplate } from './chat-template.ts';
import { parseModelConfig, type ModelConfig, type WeightQuantization } from './config.ts';
import { ModelLoadError } from './errors.ts';
import { Tokenizer, type TokenizerConfig } from './tokenizer.ts';
import { bindWeights, readModelTensors, type ModelWeights } from './weights.ts';
import { readGgufHeader } from './gguf/gguf-file.ts';
import { ggufModelText, isGgufPath, loadGgufModel } from './gguf/gguf-model.ts';

/** Sampling defaults from generation_config.json; absent ones mean greedy decoding. */
export interface GenerationDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
}

/** A model without its weights: what tokenizing, chat rendering and inferlet hosts need. */
export interface ModelText {
  name: string;
  dir: string;
  config: ModelConfig;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate;
  /** Token ids that end a generation: generation_config, then config, then the tokenizer's EOS. */
  eosTokenIds: number[];
  bosTokenId: number | null;
  generationDefaults: GenerationDefaults;
}

export interface LoadedModel extends ModelText {
  weights: ModelWeights;
}

function readJson(path: string, required: boolean): Record<string, unknown> | null {
  if (!existsSync(path)) {
    if (required) throw new ModelLoadError(`missing file ${path}`);
    return null;
  }
  try {
    const value = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value;
  } catch (err) {
    throw new ModelLoadError(`${path}: not valid JSON (${(err as Error).message})`);
  }
}

/** Reads only the config (cheap): used to validate a directory before loading weights. */
export function loadModelConfig(dir: string): ModelConfig {
  return parseModelConfig(readJson(join(dir, 'config.json'), true)!, join(dir, 'config.json'));
}

export interface LoadOptions {
  name?: string;
  fallbackChatTemplate?: string;
  /** Quantize float weights as they load (stored quantized weights load as stored). */
  quantize?: WeightQuantization | null;
}

export function loadModel(dirArg: string, options: LoadOptions = {}): LoadedModel {
  if (isGgufPath(dirArg)) return loadGgufModel(resolve(dirArg), options);
  const text = loadModelText(dirArg, options);
  return { ...text, weights: bindWeights(text.config, readModelTensors(text.dir), text.dir, options.quantize ?? null) };
}

/** Everything but the weights: config, tokenizer, chat template, stop tokens (of a model directory or a GGUF file). */
export function loadModelText(dirArg: string, options: LoadOptions = {}): ModelText {
  if (isGgufPath(dirArg)) return ggufModelText(readGgufHeader(resolve(dirArg)), options);
  const dir = resolve(dirArg);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelLoadError(`model directory ${dir} does not exist`);
  const config = loadModelConfig(dir);
  const tokJson = readJson(join(dir, 'tokenizer.json'), true)!;
  const tokConfig = (readJson(join(dir, 'tokenizer_config.json'), false) ?? {}) as TokenizerConfig;
  const gen = readJson(join(dir, 'generation_config.json'), false) ?? {};
  const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
  const ids = (v: unknown): number[] => (v == null ? [] : Array.isArray(v) ? v.map(Number) : [Number(v)]);
  return modelText({
    name: options.name ?? basename(dir),
    dir,
    config,
    tokJson,
    tokConfig,
    tokenizerSource: join(dir, 'tokenizer.json'),
    fallbackChatTemplate: options.fallbackChatTemplate,
    eosTokenIds: ids(gen.eos_token_id),
    // As in Hugging Face: temperature, top-p and top-k apply only with do_sample.
    generationDefaults: {
      ...(gen.do_sample === true ? { temperature: num(gen.temperature) ?? 1, topP: num(gen.top_p), topK: num(gen.top_k) } : {}),
      repetitionPenalty: num(gen.repetition_penalty),
    },
  });
}

/**
 * A model's text side from its parts: the tokenizer built, the chat template
 * (its own, else the fallback), and the stop tokens (the given ones, then the
 * config's, then the tokenizer's EOS).
 */
export function modelText(parts: {
  name: string;
  dir: string;
  config: ModelConfig;
  tokJson: Record<string, unknown>;
  tokConfig: TokenizerConfig;
  tokenizerSource: string;
  fallbackChatTemplate?: string;
  eosTokenIds: number[];
  generationDefaults: GenerationDefaults;
}): ModelText {
  const { config } = parts;
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(parts.tokJson, parts.tokConfig);
  } catch (err) {
    throw new ModelLoadError(`${parts.tokenizerSource}: cannot build the tokenizer (${(err as Error).message})`);
  }
  const specials = { bos_token: tokenizer.bosToken ?? '', eos_token: tokenizer.eosToken ?? '' };
  const own = pickChatTemplate(parts.tokConfig.chat_template);
  const chatTemplate = own
    ? new ChatTemplate(own, specials)
    : new ChatTemplate(parts.fallbackChatTemplate ?? FALLBACK_CHAT_TEMPLATE, specials, true);
  let eos = parts.eosTokenIds;
  if (eos.length === 0) eos = config.eosTokenIds;
  if (eos.length === 0 && tokenizer.eosTokenId != null) eos = [tokenizer.eosTokenId];
  return {
    name: parts.name,
    dir: parts.dir,
    config,
    tokenizer,
    chatTemplate,
    eosTokenIds: eos,
    bosTokenId: tokenizer.bosTokenId ?? config.bosTokenId,
    generationDefaults: parts.generationDefaults,
  };
}
