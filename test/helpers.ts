/**
 * Shared test fixtures: model directories made once per machine in the temp
 * folder, the shared models when present, engines on the mock driver, and
 * the page-leak check.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect } from 'vitest';
import { MockDriver, type MockBehaviour } from '../drivers/mock/driver.ts';
import { startEngine, type Engine, type StartOptions } from '../src/engine/index.ts';
import { importLlama2c } from '../src/model/llama2c.ts';
import { createRandomModel, PRESETS, type RandomModelSpec } from '../src/model/random.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED_MODELS = resolve(REPO_ROOT, '../shared/models');
export const STORIES_DIR = join(SHARED_MODELS, 'stories260K');
export const LLAMA_TOKENIZER_DIR = join(SHARED_MODELS, 'tiny-random-llama-onnx');
export const haveStories = existsSync(join(STORIES_DIR, 'stories260K.bin'));
export const haveLlamaTokenizer = existsSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer.json'));
export const SKIP_STORIES = haveStories ? '' : `skipped: ${STORIES_DIR} is absent (the shared models folder is not on this machine)`;
export const SKIP_TOKENIZER = haveLlamaTokenizer ? '' : `skipped: ${LLAMA_TOKENIZER_DIR} is absent (the shared models folder is not on this machine)`;
export const CHAT_TEMPLATES_DIR = resolve(REPO_ROOT, '../shared/chat-templates');
export const haveChatTemplates = existsSync(join(CHAT_TEMPLATES_DIR, 'hermes-tools.jinja'));
export const SKIP_CHAT_TEMPLATES = haveChatTemplates ? '' : `skipped: ${CHAT_TEMPLATES_DIR} is absent (the shared chat templates are not on this machine)`;
if (SKIP_STORIES) console.warn(SKIP_STORIES);

const CACHE = join(tmpdir(), 'pie-gateway-test-models');

/** Makes a directory once (atomically: built aside, then renamed into place). */
function once(name: string, make: (dir: string) => void): string {
  const dir = join(CACHE, name);
  if (existsSync(dir)) return dir;
  mkdirSync(CACHE, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  make(tmp);
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** A very small Llama (GQA, untied head) that architecture variants start from. */
export const SMALL_SPEC: RandomModelSpec = {
  architecture: 'LlamaForCausalLM',
  hiddenSize: 32,
  intermediateSize: 48,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  vocabSize: 320,
  maxPositionEmbeddings: 256,
  tieWordEmbeddings: false,
};

export function randomModelDir(spec: RandomModelSpec = PRESETS.tiny, seed = 1): string {
  const hash = createHash('sha256').update(JSON.stringify({ spec, seed, v: 1 })).digest('hex').slice(0, 12);
  return once(`random-${hash}`, (dir) => createRandomModel(dir, spec, seed));
}

/**
 * The tiny random model with a chat template of `../shared/chat-templates`
 * and, optionally, extra tokens added to its vocabulary (as Qwen adds
 * `<tool_call>`, or Mistral its special `[TOOL_CALLS]`): each replaces one of
 * the last pieces.
 */
export function templatedModelDir(templateFile: string, addedTokens: string[] = [], special = false): string {
  const spec = PRESETS.tiny;
  const hash = createHash('sha256').update(JSON.stringify({ templateFile, addedTokens, special, v: 1 })).digest('hex').slice(0, 12);
  return once(`templated-${hash}`, (dir) => {
    createRandomModel(dir, spec, 1);
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    config.chat_template = readFileSync(join(CHAT_TEMPLATES_DIR, templateFile), 'utf8');
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const vocab = tok.model.vocab as Record<string, number>;
    addedTokens.forEach((content, i) => {
      const id = spec.vocabSize - addedTokens.length + i;
      for (const [k, v] of Object.entries(vocab)) if (v === id) delete vocab[k];
      vocab[content] = id;
      tok.added_tokens.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
    });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  });
}

export function storiesModelDir(): string {
  return once('stories260K-v1', (dir) => importLlama2c(join(STORIES_DIR, 'stories260K.bin'), join(STORIES_DIR, 'tok512.bin'), dir));
}

const engines: Engine[] = [];

/** Every engine made through here is checked after each test: all pages back in the pool, then closed. */
afterEach(async () => {
  for (const e of engines.splice(0)) {
    try {
      expect(e.kv.pool.numInUse, 'pages still in use after the test (a leak)').toBe(0);
      expect(e.numContexts, 'contexts not released after the test').toBe(0);
    } finally {
      await e.close();
    }
  }
});

export async function testEngine(dir: string, options: StartOptions = {}): Promise<Engine> {
  const e = await startEngine(dir, { threads: 1, ...options });
  engines.push(e);
  return e;
}

export async function mockEngine(
  options: StartOptions & { behaviour?: MockBehaviour; stepDelayMs?: number; spec?: RandomModelSpec } = {},
): Promise<{ engine: Engine; driver: MockDriver }> {
  let driver!: MockDriver;
  const engine = await testEngine(randomModelDir(options.spec), {
    numPages: 64,
    pageSize: 4,
    ...options,
    driver: async (model, numPages, pageSize) =>
      (driver = new MockDriver({ vocabSize: model.config.vocabSize, numPages, pageSize, behaviour: options.behaviour, stepDelayMs: options.stepDelayMs })),
  });
  return { engine, driver };
}

/** The logits at every position of `tokens` (teacher forcing), on a fresh context released after. */
export async function logitsAt(engine: Engine, tokens: number[]): Promise<Float32Array[]> {
  const ctx = engine.createContext();
  try {
    engine.append(ctx, tokens);
    return (await engine.forward(ctx, { numLogits: tokens.length })).logits;
  } finally {
    engine.release(ctx);
  }
}

/** Runs a greedy generation from `prompt` tokens on a fresh context and releases it. */
export async function greedy(engine: Engine, prompt: number[], maxTokens: number, extra: Parameters<Engine['generate']>[1] = {}) {
  const ctx = engine.createContext();
  try {
    engine.append(ctx, prompt);
    return await engine.generate(ctx, { sampling: { temperature: 0 }, maxTokens, ignoreEos: true, ...extra }).result;
  } finally {
    engine.release(ctx);
  }
}

/** A row of logits as log-probabilities, in float64 (the reference for logprob tests). */
export function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (x) => x - lse);
}

/**
 * Runs the pie command in a child process (a server answering it may run in
 * this one): `env` over this process's, `stdin` typed into it.
 */
export function runPie(args: string[], options: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/pie.js'), ...args], { cwd: REPO_ROOT, env: { ...process.env, ...options.env } });
    if (options.stdin !== undefined) child.stdin.write(options.stdin);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
