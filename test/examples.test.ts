/**
 * The example inferlets (inferlets/examples), built with `pie build`'s code
 * and run against stories260K on the real driver.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/index.ts';
import type { StoredComponent } from '../src/runtime/host/component-store.ts';
import type { InferletHost } from '../src/runtime/host/host.ts';
import { greedy, haveStories, REPO_ROOT, SKIP_STORIES, storiesModelDir, testEngine } from './helpers.ts';
import { buildInferlet, testHost } from './inferlet-helpers.ts';

const EXAMPLES = ['text-completion', 'parallel-generation', 'beam-search', 'best-of-n', 'tree-of-thought', 'cached-system-prompt', 'windowed-attention', 'watermark', 'agent-loop', 'constrained-beam-search', 'chat-session'] as const;
type Example = (typeof EXAMPLES)[number];

const paths = {} as Record<Example, string>;
beforeAll(async () => {
  if (!haveStories) return;
  for (const name of EXAMPLES) paths[name] = await buildInferlet(join(REPO_ROOT, 'inferlets/examples', `${name}.ts`));
}, 300_000);

let engine: Engine;
let host: InferletHost;
const components = {} as Record<Example, StoredComponent>;

async function setup(): Promise<void> {
  engine = await testEngine(storiesModelDir(), { numPages: 128 });
  host = await testHost([engine]);
  for (const name of EXAMPLES) components[name] = await host.load(paths[name]);
}

async function run(name: Example, input: object): Promise<any> {
  return JSON.parse((await host.invoke(components[name], { input }).result).data!);
}

const tokenize = (text: string) => engine.model.tokenizer.encode(text, { addBos: true });

describe.skipIf(!haveStories)(`example inferlets on stories260K ${SKIP_STORIES}`, () => {
  it('text-completion: the greedy text of the engine, streamed as it is produced', async () => {
    await setup();
    const prompt = 'Once upon a time';
    const inv = host.invoke(components['text-completion'], { input: { prompt, max_tokens: 24 } });
    const streamed: string[] = [];
    inv.onEvent((e) => streamed.push(e.data));
    const r = JSON.parse((await inv.result).data!);
    const native = await greedy(engine, tokenize(prompt), 24, { ignoreEos: false });
    expect(r.text).toBe(native.text);
    expect(r.text).toContain('Lily');
    expect(streamed.join('')).toBe(r.text);
    expect(r.usage).toMatchObject({ prompt_tokens: tokenize(prompt).length, completion_tokens: 24 });
  });

  it('parallel-generation: one prefill, n forks decoding together, repeatable by seed', async () => {
    await setup();
    const prompt = 'Once upon a time, there was a little dog';
    const before = engine.numPromptTokensComputed;
    const r = await run('parallel-generation', { prompt, n: 4, max_tokens: 16, seed: 3 });
    expect(r.choices).toHaveLength(4);
    expect(new Set(r.choices.map((c: { text: string }) => c.text)).size).toBeGreaterThan(1);
    // The prompt once (each fork then recomputes at most its last token, the row that samples); not once per fork.
    const computed = engine.numPromptTokensComputed - before;
    expect(computed).toBeGreaterThanOrEqual(tokenize(prompt).length);
    expect(computed).toBeLessThanOrEqual(tokenize(prompt).length + 4);
    expect(await run('parallel-generation', { prompt, n: 4, max_tokens: 16, seed: 3 })).toEqual(r);
  });

  it('beam-search: width 1 is greedy decoding, wider beams score at least as well', async () => {
    await setup();
    const prompt = 'The cat sat';
    const one = await run('beam-search', { prompt, width: 1, max_tokens: 12 });
    const native = await greedy(engine, tokenize(prompt), 12, { ignoreEos: false });
    expect(one.tokens).toEqual(native.tokens);
    const three = await run('beam-search', { prompt, width: 3, max_tokens: 12 });
    expect(three.beams).toHaveLength(3);
    expect(three.score).toBeGreaterThanOrEqual(one.score - 1e-4);
  });

  it('best-of-n: keeps the candidate with the highest mean log-probability', async () => {
    await setup();
    const r = await run('best-of-n', { prompt: 'Tom went to the park', n: 4, max_tokens: 12 });
    expect(r.candidates).toHaveLength(4);
    const top = Math.max(...r.candidates.map((c: { mean_logprob: number }) => c.mean_logprob));
    expect(r.best.mean_logprob).toBe(top);
  });

  it('tree-of-thought: branches, scores and prunes, freeing pruned branches', async () => {
    await setup();
    const r = await run('tree-of-thought', { prompt: 'Once upon a time', depth: 2, branches: 3, keep: 2, step_tokens: 6 });
    expect(r.expanded).toBe(3 + 2 * 3);
    expect(r.pruned).toBe(1 + 4);
    expect(r.thoughts).toHaveLength(2);
    expect(r.text.length).toBeGreaterThan(0);
  });

  it('cached-system-prompt: the second invocation opens the snapshot and computes only its question', async () => {
    await setup();
    const system = 'Once upon a time, there was a big red ball. It liked to roll down the hill every day. One day, a little boy named Tom saw the ball.';
    let before = engine.numPromptTokensComputed;
    const first = await run('cached-system-prompt', { system, question: ' Tom', max_tokens: 12 });
    const firstCost = engine.numPromptTokensComputed - before;
    before = engine.numPromptTokensComputed;
    const second = await run('cached-system-prompt', { system, question: ' Tom', max_tokens: 12 });
    const secondCost = engine.numPromptTokensComputed - before;
    expect(first.cached).toBe(false);
    expect(second.cached).toBe(true);
    expect(second.text).toBe(first.text);
    expect(secondCost).toBeLessThan(firstCost - tokenize(system).length / 2);
    expect(engine.deleteSnapshot(first.snapshot)).toBe(true);
  });

  it('windowed-attention: a window longer than the text is plain greedy; a short one changes what the model sees', async () => {
    await setup();
    const prompt = 'Once upon a time';
    const wide = await run('windowed-attention', { prompt, window: 512, sinks: 0, max_tokens: 24 });
    const native = await greedy(engine, tokenize(prompt), 24, { ignoreEos: false });
    expect(wide.tokens).toEqual(native.tokens);
    const narrow = await run('windowed-attention', { prompt, window: 4, sinks: 1, max_tokens: 24 });
    expect(narrow.tokens).toHaveLength(24);
    expect(narrow.tokens).not.toEqual(wide.tokens);
  });

  it('watermark: watermarked text is detected with the key; unwatermarked text is not', async () => {
    await setup();
    const marked = await run('watermark', { prompt: 'Once upon a time', max_tokens: 40, delta: 4 });
    const plain = await run('watermark', { prompt: 'Once upon a time', max_tokens: 40, delta: 0 });
    expect(marked.tokens.length).toBeGreaterThan(20);
    expect(marked.z).toBeGreaterThan(4);
    expect(plain.z).toBeLessThan(marked.z - 2);
    const last = tokenize('Once upon a time').at(-1)!;
    expect((await run('watermark', { detect: [last, ...marked.tokens] })).z).toBeCloseTo(marked.z, 6);
  });

  it('agent-loop: a constrained tool call, the tool run inside the inferlet, its result and the answer on the same context', async () => {
    await setup();
    const prompt = 'Who is Lily?';
    const r = await run('agent-loop', { prompt, max_tokens: 160, max_calls: 2 });
    expect(r.calls).toHaveLength(2);
    for (const c of r.calls) {
      expect(c.tool).toBe('describe');
      const { name } = JSON.parse(c.arguments);
      expect(['Lily', 'Tom', 'Ben', 'Sue']).toContain(name);
      expect(c.result.startsWith(name)).toBe(true);
    }
    expect(typeof r.answer).toBe('string');
    expect(r.context_tokens).toBeGreaterThan(tokenize(prompt).length + 40);
  });

  it('chat-session: each message a turn on the same context, the reply sent back; a turn prefills only its own tokens', async () => {
    await setup();
    const inv = host.invoke(components['chat-session'], { input: { max_tokens: 16 } });
    const replies: string[] = [];
    inv.onEvent((e) => e.event === 'session.message' && replies.push(e.data));
    const reply = async (n: number) => {
      for (let i = 0; i < 1000 && replies.length < n; i++) await new Promise((r) => setTimeout(r, 5));
      return replies[n - 1]!;
    };
    expect(await reply(1)).toBe('Say something (/bye to end).');
    await inv.deliver('Tell me about Lily.');
    expect(typeof (await reply(2))).toBe('string');
    const before = engine.numPromptTokensComputed;
    await inv.deliver('And Tom?');
    await reply(3);
    const second = engine.numPromptTokensComputed - before;
    await inv.deliver('/bye');
    const r = JSON.parse((await inv.result).data!);
    expect(r).toMatchObject({ turns: 2, reason: 'bye' });
    expect(replies.at(-1)).toBe('Bye.');
    // The second turn computed its own message (and the first reply's last token), not the conversation again.
    expect(second).toBeGreaterThan(0);
    expect(second).toBeLessThan(r.context_tokens / 2);
  });

  it("constrained-beam-search: every beam valid under the schema; width 1 is the engine's greedy constrained generation", async () => {
    await setup();
    const prompt = 'Once upon a time, Lily had a pet';
    const schema = { type: 'object', properties: { pet: { enum: ['cat', 'dog', 'bird'] }, age: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['pet', 'age'], additionalProperties: false };
    const r = await run('constrained-beam-search', { prompt, schema, width: 4, max_tokens: 40 });
    expect(r.beams).toHaveLength(4);
    for (const b of r.beams) {
      expect(b.complete).toBe(true);
      const v = JSON.parse(b.text);
      expect(['cat', 'dog', 'bird']).toContain(v.pet);
      expect(v.age).toBeGreaterThanOrEqual(1);
    }
    const scores = r.beams.map((b: { score: number }) => b.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    const one = await run('constrained-beam-search', { prompt, schema, width: 1, max_tokens: 40 });
    const grammar = await engine.grammars.compile({ type: 'json_schema', schema: JSON.stringify(schema) });
    const native = await greedy(engine, tokenize(prompt), 40, { ignoreEos: false, grammar });
    expect(one.best.text).toBe(native.text);
    const choice = await run('constrained-beam-search', { prompt: 'The sky is', choices: ['blue', 'green', 'very dark'], width: 3 });
    expect(choice.beams.map((b: { text: string }) => b.text).sort()).toEqual(['blue', 'green', 'very dark']);
    expect(engine.grammars.stats().matchers).toBe(0);
  });
});
