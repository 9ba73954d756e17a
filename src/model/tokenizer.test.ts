import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { haveLlamaTokenizer, haveStories, LLAMA_TOKENIZER_DIR, SKIP_STORIES, SKIP_TOKENIZER, storiesModelDir } from '../../test/helpers.ts';
import { IncrementalDecoder } from '../engine/detokenizer.ts';
import { loadModel } from './load.ts';
import { ChatTemplate, pickChatTemplate } from './chat-template.ts';
import { Tokenizer } from './tokenizer.ts';
import { Rng } from '../util/rng.ts';

const llama = () =>
  new Tokenizer(
    JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer.json'), 'utf8')),
    JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8')),
  );

const SAMPLES = [
  'Hello, world!',
  '  leading and trailing spaces  ',
  'Emoji: 😀👍🏽🇫🇷 family 👨‍👩‍👧‍👦',
  'CJK: 你好，世界。日本語のテキスト、한국어',
  'tabs\tand\nnewlines\n\n',
  'mixed 123 ½ ü ß — “quotes”',
];

describe.skipIf(!haveLlamaTokenizer)(`the 32k Llama tokenizer ${SKIP_TOKENIZER}`, () => {
  it('round-trips text including emoji and CJK', () => {
    const tok = llama();
    expect(tok.vocabSize).toBe(32000);
    for (const s of SAMPLES) {
      const ids = tok.encode(s);
      expect(ids[0]).toBe(1);
      expect(tok.decode(ids)).toBe(s);
    }
  });

  it('decodes incrementally without ever emitting a broken character', () => {
    const tok = llama();
    for (const s of SAMPLES) {
      const ids = tok.encode(s, { addBos: false });
      const dec = new IncrementalDecoder(tok);
      let out = '';
      for (const id of ids) {
        const delta = dec.push(id);
        expect(delta).not.toContain('\uFFFD');
        out += delta;
      }
      out += dec.flush();
      expect(out).toBe(s);
    }
  });

  it('decodes a random token stream incrementally to exactly the full decode', () => {
    const tok = llama();
    const rng = new Rng(5);
    for (let trial = 0; trial < 5; trial++) {
      // Mostly ordinary tokens, with runs of byte-fallback tokens (ids 3..258) mixed in.
      const ids = Array.from({ length: 400 }, () => (rng.next() < 0.2 ? 3 + Math.floor(rng.next() * 256) : 259 + Math.floor(rng.next() * 31000)));
      const dec = new IncrementalDecoder(tok);
      let out = '';
      for (const id of ids) out += dec.push(id);
      out += dec.flush();
      expect(out).toBe(tok.decode(ids));
    }
  });

  it('splits multi-byte characters over byte-fallback tokens and still emits them whole', () => {
    const tok = llama();
    const ids = tok.encode('🦙', { addBos: false });
    expect(ids.length).toBeGreaterThan(2);
    const dec = new IncrementalDecoder(tok);
    const deltas = ids.map((id) => dec.push(id));
    expect(deltas.filter((d) => d !== '')).toEqual(['🦙']);
  });

  it('drops special tokens from the text unless told to keep them (skip_special_tokens)', () => {
    const tok = llama();
    const ids = [...tok.encode('Hi', { addBos: false }), 2, ...tok.encode('there', { addBos: false })];
    const run = (dec: IncrementalDecoder) => ids.map((id) => dec.push(id)).join('') + dec.flush();
    expect(run(new IncrementalDecoder(tok))).not.toContain('</s>');
    expect(run(new IncrementalDecoder(tok, [], false))).toContain('</s>');
  });

  it('keeps the leading space of a continuation when given the tokens before it', () => {
    const tok = llama();
    const ids = tok.encode('Once upon a time', { addBos: false });
    const dec = new IncrementalDecoder(tok, ids.slice(0, 2));
    const text = ids.slice(2).map((id) => dec.push(id)).join('');
    expect(text).toBe(' a time');
  });
});

describe.skipIf(!haveLlamaTokenizer)(`the Llama-2 chat template ${SKIP_TOKENIZER}`, () => {
  it('renders a conversation exactly as the model expects it', () => {
    const config = JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8'));
    const template = new ChatTemplate(pickChatTemplate(config.chat_template)!, { bos_token: '<s>', eos_token: '</s>' });
    const text = template.render([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: 'Bye' },
    ]);
    expect(text).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]');
    // Encoded with the template's own BOS and EOS as special tokens, and no second BOS.
    const ids = llama().encodeChat(text);
    expect(ids.filter((id) => id === 1)).toHaveLength(2);
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
    expect(ids.filter((id) => id === 2)).toHaveLength(1);
  });

  it('reports the template\'s own errors', () => {
    const config = JSON.parse(readFileSync(join(LLAMA_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8'));
    const template = new ChatTemplate(config.chat_template, { bos_token: '<s>', eos_token: '</s>' });
    expect(() => template.render([{ role: 'assistant', content: 'x' }])).toThrow(/Conversation roles must alternate/);
  });
});

describe.skipIf(!haveStories)(`the imported stories260K tokenizer ${SKIP_STORIES}`, () => {
  it('adds BOS to a chat prompt rendered by a template that does not write it', () => {
    const model = loadModel(storiesModelDir());
    const ids = model.tokenizer.encodeChat(model.chatTemplate.render([{ role: 'user', content: 'Hi' }]));
    expect(ids[0]).toBe(1);
    expect(model.tokenizer.decode(ids)).toBe('User: Hi\nAssistant:');
  });

  it('encodes the reference vectors exactly', () => {
    const tok = loadModel(storiesModelDir()).tokenizer;
    expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('Tom said 你好 to')).toEqual([1, 274, 287, 336, 410, 231, 192, 163, 232, 168, 192, 267]);
    expect(tok.encode('{"name": "Lily"}')).toEqual([1, 410, 126, 436, 416, 314, 411, 436, 467, 313, 438, 310, 436, 128]);
    expect(tok.decode([1, 274, 287, 336, 410, 231, 192, 163, 232, 168, 192, 267])).toBe('Tom said 你好 to');
  });
});
