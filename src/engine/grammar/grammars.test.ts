import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { haveLlamaTokenizer, haveStories, LLAMA_TOKENIZER_DIR, SKIP_STORIES, SKIP_TOKENIZER, storiesModelDir } from '../../../test/helpers.ts';
import { loadModelText } from '../../model/load.ts';
import { Tokenizer } from '../../model/tokenizer.ts';
import { GrammarChecker } from './checker.ts';
import { GrammarError, Grammars } from './grammars.ts';
import type { Matcher } from './matcher.ts';
import { choiceGrammar, compactJson, type GrammarSource } from './source.ts';
import { parseToolCalls, toolCallTag, type ToolFormat } from '../../model/tool-calls.ts';

interface Case {
  name: string;
  schema: object;
  valid: unknown[];
  invalid: unknown[];
}

const CASES: Case[] = [
  {
    name: 'an object with required and optional properties',
    schema: { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' }, email: { type: 'string' } }, required: ['name', 'age'], additionalProperties: false },
    valid: [{ name: 'Lily', age: 3 }, { name: 'Tom', age: 40, email: 't@x.org' }],
    invalid: [{ name: 'Lily' }, { name: 'Lily', age: 'three' }, { name: 'Lily', age: 3, extra: true }],
  },
  {
    name: 'nested arrays',
    schema: { type: 'object', properties: { grid: { type: 'array', items: { type: 'array', items: { type: 'integer' }, minItems: 1 }, maxItems: 3 } }, required: ['grid'], additionalProperties: false },
    valid: [{ grid: [[1, 2], [3]] }, { grid: [] }],
    invalid: [{ grid: [[]] }, { grid: [[1], [2], [3], [4]] }, { grid: [1, 2] }],
  },
  {
    name: 'enum and const',
    schema: { type: 'object', properties: { color: { enum: ['red', 'green'] }, kind: { const: 'fruit' } }, required: ['color', 'kind'], additionalProperties: false },
    valid: [{ color: 'red', kind: 'fruit' }, { color: 'green', kind: 'fruit' }],
    invalid: [{ color: 'blue', kind: 'fruit' }, { color: 'red', kind: 'veg' }],
  },
  {
    name: 'anyOf and oneOf',
    schema: {
      type: 'object',
      properties: { v: { anyOf: [{ type: 'string' }, { type: 'integer' }] }, w: { oneOf: [{ type: 'boolean' }, { type: 'array', items: { type: 'string' } }] } },
      required: ['v', 'w'],
      additionalProperties: false,
    },
    valid: [{ v: 'a', w: true }, { v: 7, w: ['x', 'y'] }],
    invalid: [{ v: 1.5, w: true }, { v: 'a', w: 'no' }],
  },
  {
    name: '$ref and $defs',
    schema: {
      $defs: { point: { type: 'object', properties: { x: { type: 'integer' }, y: { type: 'integer' } }, required: ['x', 'y'], additionalProperties: false } },
      type: 'object',
      properties: { from: { $ref: '#/$defs/point' }, to: { $ref: '#/$defs/point' } },
      required: ['from', 'to'],
      additionalProperties: false,
    },
    valid: [{ from: { x: 1, y: 2 }, to: { x: -3, y: 0 } }],
    invalid: [{ from: { x: 1 }, to: { x: 1, y: 2 } }, { from: { x: 1, y: 2 }, to: 5 }],
  },
  {
    name: 'string length and pattern',
    schema: { type: 'object', properties: { code: { type: 'string', pattern: '^[A-Z]{3}$' }, nick: { type: 'string', minLength: 2, maxLength: 4 } }, required: ['code', 'nick'], additionalProperties: false },
    valid: [{ code: 'ABC', nick: 'jo' }, { code: 'XYZ', nick: 'anna' }],
    invalid: [{ code: 'AB', nick: 'jo' }, { code: 'abc', nick: 'jo' }, { code: 'ABC', nick: 'j' }, { code: 'ABC', nick: 'jonas' }],
  },
  {
    name: 'numeric bounds',
    schema: { type: 'object', properties: { n: { type: 'integer', minimum: 1, maximum: 12 }, x: { type: 'number', minimum: 0, maximum: 1 } }, required: ['n', 'x'], additionalProperties: false },
    valid: [{ n: 1, x: 0.5 }, { n: 12, x: 1 }],
    invalid: [{ n: 0, x: 0.5 }, { n: 13, x: 0.5 }, { n: 5, x: -0.5 }],
  },
  {
    name: 'additionalProperties with a schema',
    schema: { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'], additionalProperties: { type: 'boolean' } },
    valid: [{ id: 1 }, { id: 2, flag: true, other: false }],
    invalid: [{ id: 1, flag: 'yes' }],
  },
  {
    name: 'nullable values',
    schema: { type: 'object', properties: { note: { type: ['string', 'null'] }, score: { anyOf: [{ type: 'number' }, { type: 'null' }] } }, required: ['note', 'score'], additionalProperties: false },
    valid: [{ note: null, score: null }, { note: 'hi', score: 2.5 }],
    invalid: [{ note: 3, score: null }, { note: null }],
  },
];

interface Vocab {
  name: string;
  tokenizer: Tokenizer;
  vocabSize: number;
  eos: number;
  /** Token ids of `text` as a continuation (not the start of a prompt). */
  ids(text: string): number[];
}

/** SentencePiece-style vocabularies prepend "▁" to the first piece: tokenize after a newline and drop what stands for it. */
function continuationIds(tok: Tokenizer, text: string): number[] {
  const ids = tok.encode('\n' + text, { addBos: false });
  let prefix = '';
  let k = 0;
  while (k < ids.length && prefix.replace(/^ /, '') !== '\n') prefix += new TextDecoder().decode(tok.tokenBytes(ids[k++]!));
  const rest = ids.slice(k);
  const bytes = Buffer.concat(rest.map((t) => tok.tokenBytes(t)));
  expect(bytes.toString('utf8'), 'the continuation tokens spell the text').toBe(text);
  return rest;
}

/** A byte-level BPE vocabulary (GPT-2's byte alphabet, a few merges), made here. */
function byteLevelTokenizer(): Tokenizer {
  const alphabet: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    alphabet.push(String.fromCodePoint(printable ? b : 256 + n++));
  }
  const merges = [['{', '"'], ['"', ':'], ['Ġ', '"'], ['"', ','], ['n', 'a'], ['m', 'e'], ['na', 'me'], ['Ġ', '1']];
  const vocab: Record<string, number> = {};
  alphabet.forEach((c, i) => (vocab[c] = i));
  for (const [a, b] of merges) vocab[a! + b!] = Object.keys(vocab).length;
  const eos = Object.keys(vocab).length;
  const json = {
    version: '1.0',
    added_tokens: [{ id: eos, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  };
  return new Tokenizer(json, { eos_token: '<|endoftext|>' });
}

const vocabularies: Array<{ name: string; skip: string; make: () => Vocab }> = [
  {
    name: 'the 32k Llama vocabulary (byte fallback)',
    skip: haveLlamaTokenizer ? '' : SKIP_TOKENIZER,
    make: () => {
      const tokenizer = new Tokenizer(
        JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer.json'), 'utf8')),
        JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8')),
      );
      return { name: 'llama', tokenizer, vocabSize: 32000, eos: 2, ids: (t) => continuationIds(tokenizer, t) };
    },
  },
  {
    name: "stories260K's 512 pieces (byte fallback)",
    skip: haveStories ? '' : SKIP_STORIES,
    make: () => {
      const m = loadModelText(storiesModelDir());
      return { name: 'stories', tokenizer: m.tokenizer, vocabSize: m.config.vocabSize, eos: m.eosTokenIds[0]!, ids: (t) => continuationIds(m.tokenizer, t) };
    },
  },
  {
    name: 'a byte-level BPE vocabulary',
    skip: '',
    make: () => {
      const tokenizer = byteLevelTokenizer();
      const eos = tokenizer.eosTokenId!;
      return { name: 'byte-level', tokenizer, vocabSize: eos + 1, eos, ids: (t) => tokenizer.encode(t, { addBos: false }) };
    },
  },
];

const allows = (mask: Uint32Array, t: number) => ((mask[t >>> 5]! >>> (t & 31)) & 1) === 1;

/** Forces `ids` through the matcher: every token must be in the mask and accepted; then the end token must be allowed. */
async function forces(m: Matcher, ids: number[], eos: number): Promise<boolean> {
  for (const t of ids) {
    const mask = await m.mask();
    if (!allows(mask, t)) return false;
    if (!m.accept(t)) throw new Error(`token ${t} was in the mask but not accepted`);
  }
  const end = await m.mask();
  if (!allows(end, eos)) return false;
  expect(m.accept(eos)).toBe(true);
  expect(m.isTerminated).toBe(true);
  return true;
}

const checker = new GrammarChecker();
afterAll(() => checker.close());

for (const v of vocabularies) {
  describe.skipIf(v.skip !== '')(`grammars on ${v.name} ${v.skip}`, () => {
    const vocab = v.skip ? (null as never) : v.make();
    const grammars = v.skip ? (null as never) : new Grammars(vocab.tokenizer, vocab.vocabSize, [vocab.eos], { checker });

    for (const c of CASES) {
      it(`accepts valid and rejects invalid instances: ${c.name}`, async () => {
        const grammar = await grammars.compile({ type: 'json_schema', schema: JSON.stringify(c.schema) });
        for (const instance of c.valid) {
          const m = await grammars.matcher(grammar);
          expect(await forces(m, vocab.ids(compactJson(instance)), vocab.eos), compactJson(instance)).toBe(true);
          m.dispose();
        }
        for (const instance of c.invalid) {
          const m = await grammars.matcher(grammar);
          expect(await forces(m, vocab.ids(compactJson(instance)), vocab.eos), compactJson(instance)).toBe(false);
          m.dispose();
        }
      });
    }

    it('rejects JSON with free whitespace (outputs are compact)', async () => {
      const grammar = await grammars.compile({ type: 'json_object' });
      const m = await grammars.matcher(grammar);
      expect(await forces(m, vocab.ids('{"a":  1}'), vocab.eos)).toBe(false);
      m.reset();
      expect(await forces(m, vocab.ids('{"a": [1, {"b": null}]}'), vocab.eos)).toBe(true);
      m.dispose();
    });

    it('keeps raw control characters out of JSON strings, also strings with length bounds (which xgrammar lets them into)', async () => {
      const bounded = { type: 'object', properties: { s: { type: 'string', minLength: 1, maxLength: 8 } }, required: ['s'], additionalProperties: false };
      const grammar = await grammars.compile({ type: 'json_schema', schema: JSON.stringify(bounded) });
      const tag = await grammars.compile({ type: 'structural_tag', tag: JSON.stringify({ format: { type: 'tag', begin: '<a>', content: { type: 'json_schema', json_schema: bounded }, end: '</a>' } }) });
      for (const [g, wrap] of [[grammar, (x: string) => x], [tag, (x: string) => `<a>${x}</a>`]] as const) {
        for (const [text, ok] of [['{"s": "ab"}', true], ['{"s": "a\u000eb"}', false], ['{"s": "a\tb"}', false]] as const) {
          const m = await grammars.matcher(g);
          expect(await forces(m, vocab.ids(wrap(text)), vocab.eos), JSON.stringify(text)).toBe(ok);
          m.dispose();
        }
      }
    });

    it('matches a regex, an EBNF grammar and a choice as whole outputs', async () => {
      const cases: Array<[GrammarSource, string[], string[]]> = [
        [{ type: 'regex', pattern: '[0-9]{3}-[a-z]+' }, ['123-abc'], ['12-abc', '123-']],
        [{ type: 'ebnf', grammar: 'root ::= "(" item ("," item)* ")"\nitem ::= [a-z]+' }, ['(a,bc)'], ['(a,)', 'a']],
        [{ type: 'choice', choices: ['yes', 'no', 'say "maybe"\\'] }, ['yes', 'no', 'say "maybe"\\'], ['ye', 'yess', 'maybe']],
      ];
      for (const [source, good, bad] of cases) {
        const grammar = await grammars.compile(source);
        for (const text of good) {
          const m = await grammars.matcher(grammar);
          expect(await forces(m, vocab.ids(text), vocab.eos), text).toBe(true);
          m.dispose();
        }
        for (const text of bad) {
          const m = await grammars.matcher(grammar);
          expect(await forces(m, vocab.ids(text), vocab.eos), text).toBe(false);
          m.dispose();
        }
      }
    });

    it('matches structural tags: free text, then tool calls whose arguments are compact JSON valid against their schema', async () => {
      const weather = { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'], additionalProperties: false };
      const call = (name: string, schema: object) => ({ type: 'tag', begin: `<tool_call>{"name": "${name}", "arguments": `, content: { type: 'json_schema', json_schema: schema }, end: '}</tool_call>' });
      const tags = [call('get_weather', weather), call('noop', { type: 'object', properties: {}, additionalProperties: false })];
      const auto = await grammars.compile({ type: 'structural_tag', tag: JSON.stringify({ type: 'structural_tag', format: { type: 'triggered_tags', triggers: ['<tool_call>'], tags } }) });
      const only = await grammars.compile({ type: 'structural_tag', tag: JSON.stringify({ type: 'structural_tag', format: { type: 'tags_with_separator', tags, separator: ' ', at_least_one: true } }) });
      const good = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}</tool_call>';
      const cases: Array<[typeof auto, string, boolean]> = [
        [auto, 'It is sunny.', true],
        [auto, `Let me look. ${good}`, true],
        [auto, `${good} ${good.replace('Paris', 'Rome')}`, true],
        [auto, 'Let me look. <tool_call>{"name": "get_weather", "arguments": {"city":  "Paris"}}</tool_call>', false], // free whitespace
        [auto, 'Let me look. <tool_call>{"name": "get_weather", "arguments": {"days": 2}}</tool_call>', false], // a required property missing
        [auto, 'Let me look. <tool_call>{"name": "get_time", "arguments": {}}</tool_call>', false], // no such tool
        [only, good, true],
        [only, `${good} <tool_call>{"name": "noop", "arguments": {}}</tool_call>`, true],
        [only, `Sure. ${good}`, false], // calls only
        [only, '', false], // at least one
      ];
      for (const [grammar, text, ok] of cases) {
        const m = await grammars.matcher(grammar);
        expect(await forces(m, vocab.ids(text), vocab.eos), text).toBe(ok);
        m.dispose();
      }
    });

    it('constrains tool calls in each model format to what the format reads back', async () => {
      const tools = [
        { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false } },
        { name: 'noop', parameters: { type: 'object', properties: {}, additionalProperties: false } },
      ];
      const calls: Record<ToolFormat, string> = {
        hermes: '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        generic: '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
        llama3_json: '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        mistral: '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]',
      };
      for (const format of Object.keys(calls) as ToolFormat[]) {
        const text = calls[format];
        expect(parseToolCalls(format, text).calls).toEqual([{ name: 'get_weather', arguments: '{"city": "Paris"}', complete: true }]);
        const compile = (choice: Parameters<typeof toolCallTag>[2]) => grammars.compile({ type: 'structural_tag', tag: JSON.stringify(toolCallTag(format, tools, choice, true)) });
        const cases: Array<[Parameters<typeof toolCallTag>[2], string, boolean]> = [
          [{ mode: 'required' }, text, true],
          [{ mode: 'required' }, 'Hello.', false],
          [{ mode: 'auto' }, `Let me see. ${text}`, true],
          [{ mode: 'auto' }, 'Hello.', true],
          [{ mode: 'function', name: 'noop' }, text, false],
          [{ mode: 'required' }, text.replace('"Paris"', '3'), false],
        ];
        for (const [choice, t, ok] of cases) {
          const m = await grammars.matcher(await compile(choice));
          expect(await forces(m, vocab.ids(t), vocab.eos), `${format} ${choice.mode}: ${t}`).toBe(ok);
          m.dispose();
        }
      }
    });

    it('rolls back, forks and resets', async () => {
      const m = await grammars.matcher(await grammars.compile({ type: 'choice', choices: ['abc', 'abd'] }));
      const ids = vocab.ids('abc');
      for (const t of ids) expect(m.accept(t)).toBe(true);
      const fork = await m.fork();
      m.rollback(ids.length);
      expect(m.numAccepted).toBe(0);
      expect(await forces(m, vocab.ids('abd'), vocab.eos)).toBe(true);
      expect(await forces(fork, [], vocab.eos)).toBe(true);
      expect(() => fork.rollback(99)).toThrow(RangeError);
      m.reset();
      expect(m.isTerminated).toBe(false);
      m.dispose();
      fork.dispose();
    });
  });
}

describe('grammar errors', () => {
  const tokenizer = byteLevelTokenizer();
  const grammars = new Grammars(tokenizer, tokenizer.eosTokenId! + 1, [tokenizer.eosTokenId!], { checker, cacheSize: 2 });

  it('refuses what the grammar engine cannot honour, naming the problem', async () => {
    const refusals: Array<[GrammarSource, RegExp]> = [
      [{ type: 'json_schema', schema: '{"$ref": "#/$defs/missing"}' }, /missing/],
      [{ type: 'json_schema', schema: '{"type": "object"' }, /not JSON/],
      [{ type: 'json_schema', schema: '[1]' }, /object or a boolean/],
      [{ type: 'structural_tag', tag: '{"format": ' }, /not JSON/],
      [{ type: 'structural_tag', tag: JSON.stringify({ format: { type: 'tag', begin: '<a>', content: { type: 'json_schema', json_schema: { $ref: '#/$defs/nowhere' } }, end: '</a>' } }) }, /nowhere/],
      [{ type: 'regex', pattern: '((' }, /parenthesis/],
      [{ type: 'ebnf', grammar: 'root ::= [a-' }, /character class/],
      [{ type: 'ebnf', grammar: 'root ::= other' }, /other/],
      [{ type: 'choice', choices: [] }, /at least one/],
    ];
    for (const [source, message] of refusals) {
      const err = await grammars.compile(source).catch((e: unknown) => e);
      expect(err, JSON.stringify(source)).toBeInstanceOf(GrammarError);
      expect((err as Error).message).toMatch(message);
    }
    // The engine thread's copy of the library never saw them: it still compiles.
    await grammars.compile({ type: 'regex', pattern: 'ok' });
    expect(grammars.stats().refused).toBe(refusals.length);
  });

  it('survives refusals that leak the most (deeply nested), with valid grammars compiling in between', async () => {
    let deep: object = { type: 'string', pattern: '((' };
    for (let i = 0; i < 50; i++) deep = { type: 'object', properties: { [`k${i}`]: deep }, required: [`k${i}`] };
    const before = checker.numWorkers;
    for (let i = 0; i < 12; i++) {
      const err = await grammars.compile({ type: 'json_schema', schema: JSON.stringify({ ...deep, title: `try ${i}` }) }).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/parenthesis/); // the library's own message every time, never a broken worker's
      await grammars.compile({ type: 'regex', pattern: `[0-9]{${i + 1}}` });
    }
    expect(checker.numWorkers).toBeGreaterThanOrEqual(before + 12); // a fresh worker after every abort
  });

  it('refuses a grammar that takes longer than the limit to compile, and times only the compile', async () => {
    const big = { type: 'object', properties: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`p${i}`, { type: 'string', pattern: `[a-z]{1,${20 + i}}` }])) };
    const patient = new Grammars(tokenizer, tokenizer.eosTokenId! + 1, [tokenizer.eosTokenId!], { checker, compileTimeoutMs: 30_000 });
    const took = (await patient.compile({ type: 'json_schema', schema: JSON.stringify(big) })).compileMs;
    const limit = Math.max(20, Math.round(took / 5));
    if (took < 100) return console.warn(`skipped: the big schema compiled in ${took.toFixed(0)} ms, too fast to test a time limit`);
    const slow = new Grammars(tokenizer, tokenizer.eosTokenId! + 1, [tokenizer.eosTokenId!], { checker, compileTimeoutMs: limit });
    await expect(slow.compile({ type: 'json_schema', schema: JSON.stringify({ ...big, title: 'again' }) })).rejects.toThrow(new RegExp(`longer than ${limit} ms`));
    // The next worker is warmed before it gets a check: a small grammar fits the same limit.
    await slow.compile({ type: 'regex', pattern: 'after the timeout' });
  });

  it('caches compiled grammars by source, least recently used out', async () => {
    const a = await grammars.compile({ type: 'choice', choices: ['a'] });
    expect(await grammars.compile({ type: 'choice', choices: ['a'] })).toBe(a);
    const m = await grammars.matcher(a);
    await grammars.compile({ type: 'choice', choices: ['b'] });
    await grammars.compile({ type: 'choice', choices: ['c'] }); // evicts 'a' (size 2), which its matcher still uses
    expect(await grammars.compile({ type: 'choice', choices: ['a'] })).not.toBe(a);
    expect(await forces(m, tokenizer.encode('a', { addBos: false }), tokenizer.eosTokenId!)).toBe(true);
    m.dispose();
    expect(grammars.stats().cached).toBe(2);
  });

  it('gives waiting checks a new worker when the one warming up dies', async () => {
    const own = new GrammarChecker();
    try {
      const g = new Grammars(tokenizer, tokenizer.eosTokenId! + 1, [tokenizer.eosTokenId!], { checker: own });
      const pending = g.compile({ type: 'regex', pattern: 'waits' });
      await (own as unknown as { slot: { worker: { terminate(): Promise<number> } } }).slot.worker.terminate(); // dies before it is warm
      await expect(pending).resolves.toBeDefined();
      expect(own.numWorkers).toBe(2);
    } finally {
      await own.close();
    }
  });

  it('answers a finished matcher without asking the library (which would abort)', async () => {
    const g = await grammars.compile({ type: 'choice', choices: ['a'] });
    for (let i = 0; i < 400; i++) {
      const m = await grammars.matcher(g);
      for (const t of tokenizer.encode('a', { addBos: false })) m.accept(t);
      expect(m.accept(tokenizer.eosTokenId!)).toBe(true);
      expect(m.isTerminated).toBe(true);
      expect(Array.from(await m.mask()).every((w) => w === 0)).toBe(true);
      expect(m.accept(5)).toBe(false);
      expect(m.accept(1e9)).toBe(false);
      m.dispose();
    }
    await grammars.compile({ type: 'regex', pattern: 'the library still works' });
  });

  it('moves where the grammar may end onto the generation\'s own end tokens, or none', async () => {
    const eos = tokenizer.eosTokenId!;
    const m = await grammars.matcher(await grammars.compile({ type: 'choice', choices: ['a', 'ab'] }));
    const a = tokenizer.encode('a', { addBos: false })[0]!;
    expect(m.accept(a)).toBe(true);
    const other = 7;
    const { mask: own, mayEnd } = await m.maskFor(new Set([other]));
    expect(mayEnd).toBe(true);
    expect(allows(own, other) && !allows(own, eos)).toBe(true);
    const { mask: none } = await m.maskFor(new Set());
    expect(allows(none, eos) || allows(none, other)).toBe(false);
    expect(none.some((w) => w !== 0)).toBe(true); // "b" may still follow
    expect(m.acceptEnd()).toBe(true);
    expect(m.isTerminated).toBe(true);
    m.dispose();
  });

  it('writes JSON as the grammars do: one line, ", " and ": " between items', () => {
    expect(compactJson({ a: [1, { b: null }], c: 'x, y' })).toBe('{"a": [1, {"b": null}], "c": "x, y"}');
  });

  it('escapes choices for the grammar', () => {
    expect(choiceGrammar(['a"b', 'c\\d', 'x\ny'])).toBe('root ::= "a\\"b" | "c\\\\d" | "x\\x0ay"');
  });
});
