/**
 * Loads @mlc-ai/web-xgrammar in Node. Its package.json says ESM while it
 * ships CommonJS, so a `.cjs` copy of it is required instead (made in a
 * private temporary folder, removed once loaded).
 *
 * The library writes its fatal errors (an unknown `$ref`, an invalid regex)
 * to `console.error` and then aborts the call: `captureErrors` routes those
 * lines to the caller, so the message can name the problem. An abort also
 * leaks the WebAssembly stack it unwound; after about a thousand of them the
 * module stops working, which is why untrusted grammars are compiled first
 * in a worker that can be thrown away (see checker.ts).
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { GrammarCompiler } from '@mlc-ai/web-xgrammar';
import type * as Xg from '@mlc-ai/web-xgrammar';

export type XGrammar = typeof Xg;

const require = createRequire(import.meta.url);
let loaded: Promise<XGrammar> | null = null;
let sink: string[] | null = null;

/** A model's vocabulary as the library reads it (see Tokenizer.grammarVocabulary). */
export interface GrammarVocabulary {
  pieces: string[];
  type: 'byte_fallback' | 'byte_level' | 'raw';
  prependSpace: boolean;
  stopTokenIds: number[];
}

/** A compiler for one vocabulary: its tokenizer info built (the costly part, ~0.1 s at 32k pieces), no cache of its own. */
export async function newCompiler(v: GrammarVocabulary): Promise<GrammarCompiler> {
  const xg = await xgrammar();
  // An empty list of end tokens would abort the library: without any, it finds the vocabulary's own.
  const info = await xg.TokenizerInfo.createTokenizerInfo(v.pieces, v.type, v.prependSpace, v.pieces.length, v.stopTokenIds.length > 0 ? v.stopTokenIds : undefined);
  return xg.GrammarCompiler.createGrammarCompiler(info, false);
}

/** The library, initialised (its WebAssembly module instantiated). */
export function xgrammar(): Promise<XGrammar> {
  loaded ??= load();
  return loaded;
}

async function load(): Promise<XGrammar> {
  const pkgJson = require.resolve('@mlc-ai/web-xgrammar/package.json');
  // A private folder (mkdtemp makes it 0700) that lives only while the copy is required: nobody else can plant or change it.
  const dir = mkdtempSync(join(tmpdir(), 'pie-xgrammar-'));
  const copy = join(dir, 'web-xgrammar.cjs');
  copyFileSync(join(dirname(pkgJson), 'lib', 'index.js'), copy);
  // The module binds console.error when it is instantiated: route it through
  // a function that hands the library's lines to `captureErrors` callers.
  const original = console.error;
  const routed = (...args: unknown[]) => (sink ? sink.push(args.map(String).join(' ')) : original(...args));
  console.error = routed;
  try {
    const xg = require(copy) as XGrammar;
    await xg.Grammar.fromEBNF('root ::= "a"'); // instantiates the module while console.error is routed
    return xg;
  } finally {
    if (console.error === routed) console.error = original;
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // left behind in the temporary folder; the library is loaded either way
    }
  }
}

/**
 * Runs `fn`, turning the library's abort into an Error whose message is the
 * library's own ("Regex parsing error at position 3: ..."), without the
 * source path it prefixes.
 */
export async function captureErrors<T>(fn: () => Promise<T> | T): Promise<T> {
  const lines: string[] = [];
  const outer = sink;
  sink = lines;
  try {
    return await fn();
  } catch (err) {
    const fatal = lines.find((l) => l.includes('[FATAL]')) ?? lines.find((l) => l.trim() !== '' && !l.startsWith('Aborted'));
    throw new Error(fatal ? cleanMessage(fatal) : (err as Error).message);
  } finally {
    sink = outer;
  }
}

/** "[FATAL] /path/x.cc:961: Check failed: (...) is false: Cannot find field defs" → the part after the last check text. */
export function cleanMessage(line: string): string {
  let m = line.replace(/^\[FATAL\]\s*\S+:\d+:\s*/, '');
  const check = /^Check failed: .*? is false: (.*)$/s.exec(m);
  if (check) m = check[1]!;
  return m.replace(/\s*Aborted\(\).*$/s, '').trim();
}
