import { cpSync, mkdtempSync, rmSync, writeFileSync, readFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomModelDir } from '../../test/helpers.ts';
import { loadModel } from './load.ts';

const made: string[] = [];
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A copy of the tiny model, damaged by `spoil`. */
function broken(spoil: (dir: string) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'pie-bad-model-'));
  made.push(dir);
  cpSync(randomModelDir(), dir, { recursive: true });
  spoil(dir);
  return dir;
}

const editJson = (dir: string, file: string, edit: (j: Record<string, unknown>) => void) => {
  const j = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  edit(j);
  writeFileSync(join(dir, file), JSON.stringify(j));
};

describe('loading a model directory', () => {
  it('loads config, weights, tokenizer, generation defaults and a fallback chat template', () => {
    const m = loadModel(randomModelDir());
    expect(m.config.family).toBe('llama');
    expect(m.eosTokenIds).toEqual([2]);
    expect(m.bosTokenId).toBe(1);
    expect(m.chatTemplate.isFallback).toBe(true);
    expect(m.chatTemplate.render([{ role: 'user', content: 'hi' }])).toBe('User: hi\nAssistant:');
  });

  it('takes sampling defaults from generation_config.json only when it samples', () => {
    const sampling = broken((d) => writeFileSync(join(d, 'generation_config.json'), JSON.stringify({ eos_token_id: [2, 7], do_sample: true, temperature: 0.6, top_p: 0.9 })));
    const m = loadModel(sampling);
    expect(m.eosTokenIds).toEqual([2, 7]);
    expect(m.generationDefaults).toMatchObject({ temperature: 0.6, topP: 0.9 });
    const greedy = broken((d) => writeFileSync(join(d, 'generation_config.json'), JSON.stringify({ temperature: 0.6, top_p: 0.9 })));
    expect(loadModel(greedy).generationDefaults.temperature).toBeUndefined();
  });

  it('names a directory that does not exist', () => {
    expect(() => loadModel('/nonexistent/model')).toThrow(/model directory \/nonexistent\/model does not exist/);
  });

  it('names a missing file', () => {
    expect(() => loadModel(broken((d) => unlinkSync(join(d, 'tokenizer.json'))))).toThrow(/missing file .*tokenizer\.json/);
    expect(() => loadModel(broken((d) => unlinkSync(join(d, 'config.json'))))).toThrow(/missing file .*config\.json/);
    expect(() => loadModel(broken((d) => unlinkSync(join(d, 'model.safetensors'))))).toThrow(/no \*\.safetensors weights file/);
  });

  it('names an unsupported architecture and lists the supported ones', () => {
    const dir = broken((d) => editJson(d, 'config.json', (j) => (j.architectures = ['GPT2LMHeadModel'])));
    expect(() => loadModel(dir)).toThrow(/unsupported architecture GPT2LMHeadModel; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM/);
  });

  it('names a corrupt safetensors header', () => {
    const dir = broken((d) => {
      const buf = readFileSync(join(d, 'model.safetensors'));
      buf.writeBigUInt64LE(10n ** 12n, 0);
      writeFileSync(join(d, 'model.safetensors'), buf);
    });
    expect(() => loadModel(dir)).toThrow(/corrupt safetensors file: header length 1000000000000 does not fit/);
    const dir2 = broken((d) => {
      const buf = readFileSync(join(d, 'model.safetensors'));
      buf.write('!!!!', 8);
      writeFileSync(join(d, 'model.safetensors'), buf);
    });
    expect(() => loadModel(dir2)).toThrow(/corrupt safetensors file: header is not valid JSON/);
  });

  it('names a missing tensor and a tensor of the wrong shape', () => {
    const dir = broken((d) => editJson(d, 'config.json', (j) => (j.num_hidden_layers = 3)));
    expect(() => loadModel(dir)).toThrow(/missing tensor model\.layers\.2\.input_layernorm\.weight/);
    const dir2 = broken((d) => editJson(d, 'config.json', (j) => (j.intermediate_size = 100)));
    expect(() => loadModel(dir2)).toThrow(/tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[128,64\], expected \[100,64\]/);
  });

  it('names invalid JSON and bad config values', () => {
    expect(() => loadModel(broken((d) => writeFileSync(join(d, 'config.json'), '{oops')))).toThrow(/config\.json: not valid JSON/);
    const dir = broken((d) => editJson(d, 'config.json', (j) => (j.num_key_value_heads = 3)));
    expect(() => loadModel(dir)).toThrow(/num_attention_heads 4 is not a multiple of num_key_value_heads 3/);
  });
});
