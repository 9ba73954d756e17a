/**
 * The `pie` command line.
 *
 *   pie serve [--config FILE] [--model [NAME=]DIR]... [--host H] [--port P] [--quantize q4|q8]
 *   pie generate [--model DIR] [--config FILE] [--prompt TEXT] [--max-tokens N]
 *                [--temperature T] [--top-p P] [--top-k K] [--seed S] [--quantize q4|q8]
 *   pie model download REPO[:REVISION] [--include GLOB]... [--exclude GLOB]...
 *   pie model list | rm REPO | info REPO|DIR
 *   pie model quantize DIR|REPO OUT_DIR --bits 4|8 [--block 32] [--zero-points] [--head-bits 4|8|float]
 *   pie model import-gguf FILE.gguf OUT_DIR [--quantize q4|q8]
 *   pie model import-llama2c CHECKPOINT TOKENIZER OUT_DIR
 *   pie model create-random OUT_DIR --preset tiny|bench [--seed N]
 *   pie build SRC -o OUT.wasm [--engine qjs|sm] [--wasi]
 *   pie run INFERLET.wasm [--model DIR] [--config FILE] [--quantize q4|q8] [-- INPUT_JSON]
 *   pie submit FILE.wasm|FILE.ts [--server URL] [--key KEY] [--name NAME] [-- INPUT_JSON]
 *   pie runs | attach RUN [--after N] | cancel RUN   [--server URL] [--key KEY]
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from '../config.ts';
import { ModelLoadError } from '../model/errors.ts';
import { HubError } from '../model/hub/download.ts';
import { importLlama2c } from '../model/llama2c.ts';
import { stepProgress } from './progress.ts';
import { modelDownloadCommand, modelImportGgufCommand, modelInfoCommand, modelListCommand, modelQuantizeCommand, modelRmCommand } from './model-commands.ts';
import { createRandomModel, PRESETS, type PresetName } from '../model/random.ts';
import { ComponentLoadError } from '../runtime/host/component-store.ts';
import { BuildError } from '../runtime/host/build.ts';
import { buildCommand, runCommand, UsageError, withQuantizeFlag } from './inferlet-commands.ts';
import { attachCommand, cancelCommand, RemoteError, runsCommand, submitCommand } from './remote-commands.ts';
import { engineFromConfig } from '../startup.ts';
import { serve } from '../gateway/start.ts';

const DEFAULT_CONFIG = fileURLToPath(new URL('../../pie.toml', import.meta.url));

const USAGE = `usage:
  pie serve [--config FILE] [--model [NAME=]DIR|REPO]... [--host H] [--port P] [--quantize q4|q8]
  pie generate [--model DIR|REPO] [--config FILE] [--prompt TEXT] [--max-tokens N]
               [--temperature T] [--top-p P] [--top-k K] [--seed S] [--quantize q4|q8]
  pie model download REPO[:REVISION] [--include GLOB]... [--exclude GLOB]...
  pie model list
  pie model rm REPO
  pie model info REPO|DIR
  pie model quantize DIR|REPO OUT_DIR --bits 4|8 [--block 32] [--zero-points] [--head-bits 4|8|float]
  pie model import-gguf FILE.gguf OUT_DIR [--quantize q4|q8]
  pie model import-llama2c CHECKPOINT TOKENIZER OUT_DIR
  pie model create-random OUT_DIR --preset tiny|bench [--seed N]
  pie build SRC -o OUT.wasm [--engine qjs|sm] [--wasi]
  pie run INFERLET.wasm [--model DIR] [--config FILE] [--quantize q4|q8] [-- INPUT_JSON]
  pie submit FILE.wasm|FILE.ts [--server URL] [--key KEY] [--name NAME] [-- INPUT_JSON]
  pie runs [--server URL] [--key KEY]
  pie attach RUN [--after N] [--server URL] [--key KEY]
  pie cancel RUN [--server URL] [--key KEY]`;

function number(value: string | undefined, flag: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new UsageError(`${flag} must be ${integer ? 'an integer' : 'a number'}, got "${value}"`);
  return n;
}

async function generate(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      config: { type: 'string' },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      quantize: { type: 'string' },
    },
  });
  const config = withQuantizeFlag(loadConfig(values.config ?? DEFAULT_CONFIG), values.quantize);
  const log = (line: string) => process.stderr.write(line + '\n');
  const engine = await engineFromConfig(config, values.model, log);
  try {
    const tok = engine.model.tokenizer;
    const prompt = values.prompt === undefined ? [engine.model.bosTokenId ?? 0] : tok.encode(values.prompt);
    const ctx = engine.createContext();
    engine.append(ctx, prompt);
    const t0 = performance.now();
    let firstAt = 0;
    // Flags first, then the model's generation_config.json, then greedy.
    const defaults = engine.model.generationDefaults;
    const gen = engine.generate(ctx, {
      maxTokens: number(values['max-tokens'], '--max-tokens', true) ?? 256,
      sampling: {
        temperature: number(values.temperature, '--temperature', false) ?? defaults.temperature ?? 0,
        topP: number(values['top-p'], '--top-p', false) ?? defaults.topP,
        topK: number(values['top-k'], '--top-k', true) ?? defaults.topK,
        repetitionPenalty: defaults.repetitionPenalty,
        seed: number(values.seed, '--seed', true),
      },
    });
    if (values.prompt !== undefined) process.stdout.write(values.prompt);
    for await (const chunk of gen) {
      if (!firstAt) firstAt = performance.now();
      process.stdout.write(chunk.text);
    }
    const r = await gen.result;
    engine.release(ctx);
    if (r.error) throw r.error;
    const secs = (performance.now() - t0) / 1000;
    const decodeSecs = (performance.now() - firstAt) / 1000;
    process.stdout.write('\n');
    log(
      `${r.completionTokens} tokens in ${secs.toFixed(2)} s: ${(r.completionTokens / secs).toFixed(1)} tokens/s ` +
        `(${r.completionTokens > 1 ? ((r.completionTokens - 1) / decodeSecs).toFixed(1) : '-'} tokens/s after the first; ` +
        `prompt ${r.promptTokens} tokens; finished: ${r.finishReason}) on ${engine.model.name}`,
    );
  } finally {
    await engine.close();
  }
}

/** Serves the OpenAI-compatible API until SIGINT or SIGTERM (exit code 0), or until its engine thread dies (1). */
async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, model: { type: 'string', multiple: true }, host: { type: 'string' }, port: { type: 'string' }, quantize: { type: 'string' } },
  });
  const config = withQuantizeFlag(loadConfig(values.config ?? DEFAULT_CONFIG), values.quantize);
  const port = number(values.port, '--port', true);
  if (port !== undefined && (port < 0 || port > 65535)) throw new UsageError(`--port must be in 0..65535, got ${port}`);
  const serving = await serve({ config, models: values.model, host: values.host, port });
  try {
    await serving.loaded;
  } catch (err) {
    await serving.close();
    throw err;
  }
  // Until SIGINT or SIGTERM, or until the server can serve no more (its engine thread died): then it exits with 1, for a supervisor to restart it.
  let stop = () => {};
  const signalled = new Promise<null>((resolve) => (stop = () => resolve(null)));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const lost = await Promise.race([signalled, serving.stopped]);
  // A signal while it closes is not swallowed: Node's own handling ends the process.
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  process.stderr.write(lost === null ? 'pie: shutting down\n' : `pie: ${lost}; shutting down\n`);
  await serving.close();
  return lost === null ? 0 : 1;
}

async function model(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === 'download') await modelDownloadCommand(rest);
  else if (sub === 'list') modelListCommand(rest);
  else if (sub === 'rm') modelRmCommand(rest);
  else if (sub === 'info') modelInfoCommand(rest);
  else if (sub === 'quantize') await modelQuantizeCommand(rest);
  else if (sub === 'import-gguf') modelImportGgufCommand(rest);
  else if (sub === 'import-llama2c') {
    const { positionals } = parseArgs({ args: rest, allowPositionals: true, options: {} });
    if (positionals.length !== 3) throw new UsageError('model import-llama2c takes CHECKPOINT TOKENIZER OUT_DIR');
    const [ckpt, tok, out] = positionals as [string, string, string];
    const progress = stepProgress('import-llama2c');
    let h;
    try {
      h = importLlama2c(ckpt, tok, out, (done, total) => progress.update(done, total));
    } finally {
      progress.stop();
    }
    console.log(`wrote ${out}: Llama, ${h.numLayers} layers, hidden ${h.dim}, ${h.numHeads} heads (${h.numKvHeads} kv), vocabulary ${h.vocabSize}`);
  } else if (sub === 'create-random') {
    const { positionals, values } = parseArgs({ args: rest, allowPositionals: true, options: { preset: { type: 'string' }, seed: { type: 'string' } } });
    if (positionals.length !== 1) throw new UsageError('model create-random takes OUT_DIR');
    const preset = values.preset ?? 'tiny';
    if (!(preset in PRESETS)) throw new UsageError(`--preset must be one of ${Object.keys(PRESETS).join(', ')}, got "${preset}"`);
    const progress = stepProgress('create-random');
    try {
      createRandomModel(positionals[0]!, PRESETS[preset as PresetName], number(values.seed, '--seed', true) ?? 0, (done, total) => progress.update(done, total));
    } finally {
      progress.stop();
    }
    console.log(`wrote ${positionals[0]}: random "${preset}" model`);
  } else {
    throw new UsageError(`unknown model command "${sub ?? ''}"`);
  }
}

/** The usage lines of one command (all of them for an unknown one). */
function usageOf(command: string): string {
  const out: string[] = [];
  let take = false;
  for (const line of USAGE.split('\n').slice(1)) {
    if (line.startsWith('  pie ')) take = line.startsWith(`  pie ${command} `) || line === `  pie ${command}`;
    if (take) out.push(line);
  }
  return out.length > 0 ? `usage:\n${out.join('\n')}` : USAGE;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `pie COMMAND --help` (before a `--` that starts an inferlet's input): that command's usage.
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (command !== undefined && (own.includes('--help') || own.includes('-h'))) {
    const sub = command === 'model' && own[0] && !own[0].startsWith('-') ? ` ${own[0]}` : '';
    console.log(usageOf(command + sub));
    return 0;
  }
  try {
    if (command === 'serve') return await serveCommand(rest);
    else if (command === 'generate') await generate(rest);
    else if (command === 'model') await model(rest);
    else if (command === 'build') await buildCommand(rest);
    else if (command === 'run') return await runCommand(rest, DEFAULT_CONFIG);
    else if (command === 'submit') return await submitCommand(rest);
    else if (command === 'runs') return await runsCommand(rest);
    else if (command === 'attach') return await attachCommand(rest);
    else if (command === 'cancel') return await cancelCommand(rest);
    else if (command === 'help' || command === '--help' || command === undefined) console.log(USAGE);
    else throw new UsageError(`unknown command "${command}"`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      console.error(`pie: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    if (err instanceof ConfigError || err instanceof ModelLoadError || err instanceof HubError || err instanceof BuildError || err instanceof ComponentLoadError || (err as Error).name === 'EngineError' || (err as Error).name === 'EngineThreadError' || err instanceof RemoteError) {
      console.error(`pie: ${(err as Error).message}`);
      return 1;
    }
    throw err;
  }
}
