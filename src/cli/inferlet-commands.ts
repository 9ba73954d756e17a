/**
 *   pie build SRC -o OUT.wasm [--engine qjs|sm] [--wasi]
 *   pie run INFERLET.wasm [--model DIR] [--config FILE] [-- INPUT_JSON]
 *
 * `pie run` sends each line typed on stdin to an inferlet that imports the
 * session interface, as a message.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../config.ts';
import { build, type GuestEngine } from '../runtime/host/build.ts';
import { engineFromConfig, hostFromConfig } from '../startup.ts';
import { forwardStdin } from './stdin-messages.ts';

export class UsageError extends Error {}

/** Prints an inferlet's events: text streamed by a generation as it is, a session message on its own line, other events one per line as `[event] data`. */
export function eventPrinter(): { event(e: { event: string; data: string }): void; end(): void } {
  let midLine = false;
  return {
    event(e) {
      if (e.event === 'text') {
        process.stdout.write(e.data);
        midLine = !e.data.endsWith('\n');
      } else if (e.event === 'session.message') {
        process.stdout.write(`${midLine ? '\n' : ''}${e.data}\n`);
        midLine = false;
      } else {
        process.stdout.write(`${midLine ? '\n' : ''}[${e.event}] ${e.data}\n`);
        midLine = false;
      }
    },
    /** Ends a line left open by streamed text. */
    end() {
      if (midLine) process.stdout.write('\n');
      midLine = false;
    },
  };
}

export async function buildCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { out: { type: 'string', short: 'o' }, engine: { type: 'string' }, wasi: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new UsageError('build takes one source file');
  if (!values.out) throw new UsageError('build needs -o OUT.wasm');
  const engine = values.engine ?? 'qjs';
  if (engine !== 'qjs' && engine !== 'sm') throw new UsageError(`--engine must be qjs or sm, got "${engine}"`);
  const t0 = performance.now();
  const { component } = await build(resolve(positionals[0]!), { engine: engine as GuestEngine, wasi: values.wasi === true });
  mkdirSync(dirname(resolve(values.out)), { recursive: true });
  writeFileSync(values.out, component);
  process.stderr.write(`wrote ${values.out} (${(component.length / 1e6).toFixed(1)} MB, ${engine}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

/** A command's own arguments, and the inferlet's input: the JSON after `--` (null without one). */
export function withInput(argv: string[]): { own: string[]; input: unknown } {
  const split = argv.indexOf('--');
  if (split < 0) return { own: argv, input: null };
  const rest = argv.slice(split + 1);
  if (rest.length === 0) return { own: argv.slice(0, split), input: null };
  try {
    return { own: argv.slice(0, split), input: JSON.parse(rest.join(' ')) };
  } catch (err) {
    throw new UsageError(`the input after -- must be JSON: ${(err as Error).message}`);
  }
}

/** `--quantize q4|q8` over the config's `model.quantize`. */
export function withQuantizeFlag(config: Config, value: string | undefined): Config {
  if (value === undefined) return config;
  if (value !== 'q4' && value !== 'q8') throw new UsageError(`--quantize must be q4 or q8, got "${value}"`);
  return { ...config, model: { ...config.model, quantize: value } };
}

export async function runCommand(argv: string[], defaultConfig: string): Promise<number> {
  const { own, input } = withInput(argv);
  const { values, positionals } = parseArgs({ args: own, allowPositionals: true, options: { model: { type: 'string' }, config: { type: 'string' }, quantize: { type: 'string' } } });
  if (positionals.length !== 1) throw new UsageError('run takes one INFERLET.wasm');
  const config = withQuantizeFlag(loadConfig(values.config ?? defaultConfig), values.quantize);
  const log = (line: string) => process.stderr.write(line + '\n');
  const engine = await engineFromConfig(config, values.model, log);
  const host = await hostFromConfig(config, [engine], log);
  try {
    const component = await host.load(resolve(positionals[0]!));
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.once('SIGINT', onSigint);
    const inv = host.invoke(component, { input, signal: abort.signal });
    const print = eventPrinter();
    inv.onEvent((e) => print.event(e));
    // Lines typed on stdin are session messages, for an inferlet that reads them.
    const stdin = component.imports.some((i) => i.startsWith('pie:inferlet/session')) ? forwardStdin((line) => inv.deliver(line)) : null;
    try {
      const r = await inv.result;
      print.end();
      if (r.data !== null) process.stdout.write(r.data + '\n');
      return 0;
    } catch (err) {
      print.end();
      process.stderr.write(`pie: the inferlet failed: ${(err as Error).message}\n`);
      return 1;
    } finally {
      stdin?.stop();
      process.off('SIGINT', onSigint);
    }
  } finally {
    await host.close();
    await engine.close();
  }
}
