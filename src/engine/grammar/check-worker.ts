/**
 * The grammar checker's thread: compiles untrusted grammars with its own
 * copy of xgrammar, so that a grammar the library rejects (it aborts, and
 * each abort leaks part of its stack) or one that takes long to compile
 * never touches the engine thread's copy. Requests arrive one at a time.
 */
import { parentPort } from 'node:worker_threads';
import type { GrammarCompiler } from '@mlc-ai/web-xgrammar';
import { compileSource, type GrammarSource } from './source.ts';
import { captureErrors, newCompiler, type GrammarVocabulary } from './xgrammar.ts';

export type CheckRequest =
  | { t: 'vocab'; key: string; vocab: GrammarVocabulary }
  | { t: 'forget'; key: string }
  /** Build every vocabulary's compiler now, then answer (so that a check's time is its compile). */
  | { t: 'warm'; id: number }
  | { t: 'check'; id: number; key: string; source: GrammarSource };

export type CheckReply =
  | { t: 'warm'; id: number }
  | { t: 'checked'; id: number; ok: true; ms: number }
  | { t: 'checked'; id: number; ok: false; message: string; aborted: boolean };

const port = parentPort!;
const vocabs = new Map<string, GrammarVocabulary>();
const compilers = new Map<string, Promise<GrammarCompiler>>();

async function compilerFor(key: string): Promise<GrammarCompiler> {
  let c = compilers.get(key);
  if (!c) {
    const v = vocabs.get(key);
    if (!v) throw new Error(`no vocabulary named ${key}`);
    c = newCompiler(v);
    compilers.set(key, c);
  }
  return c;
}

let queue = Promise.resolve();
port.on('message', (req: CheckRequest) => {
  if (req.t === 'vocab') {
    vocabs.set(req.key, req.vocab);
    return;
  }
  if (req.t === 'forget') {
    vocabs.delete(req.key);
    const compiler = compilers.get(req.key);
    compilers.delete(req.key);
    void compiler?.then((c) => c.dispose(), () => undefined);
    return;
  }
  if (req.t === 'warm') {
    queue = queue.then(async () => {
      for (const key of vocabs.keys()) await compilerFor(key).catch(() => undefined);
      port.postMessage({ t: 'warm', id: req.id } satisfies CheckReply);
    });
    return;
  }
  queue = queue.then(() => check(req));
});

async function check(req: Extract<CheckRequest, { t: 'check' }>): Promise<void> {
  let compiler: GrammarCompiler;
  try {
    compiler = await compilerFor(req.key);
  } catch (err) {
    port.postMessage({ t: 'checked', id: req.id, ok: false, message: (err as Error).message, aborted: false } satisfies CheckReply);
    return;
  }
  const t0 = performance.now();
  try {
    const compiled = await captureErrors(() => compileSource(compiler, req.source));
    compiled.dispose();
    port.postMessage({ t: 'checked', id: req.id, ok: true, ms: performance.now() - t0 } satisfies CheckReply);
  } catch (err) {
    port.postMessage({ t: 'checked', id: req.id, ok: false, message: (err as Error).message, aborted: true } satisfies CheckReply);
  }
}
