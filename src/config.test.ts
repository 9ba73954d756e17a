import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from './config.ts';

describe('configuration', () => {
  it('reads the shipped default.toml', () => {
    const c = loadConfig(new URL('../config/default.toml', import.meta.url).pathname);
    expect(c.model.path).toBe('models/default');
    expect(c.engine).toEqual({ pageSize: 16, kvMemoryMb: 256, maxTokensPerStep: 512, maxRowsPerStep: 256, prefixCaching: true, threads: 0 });
  });

  it('fills defaults for what is not given', () => {
    expect(parseConfig('[engine]\npage_size = 32\n', 'x.toml', '/').engine.pageSize).toBe(32);
    expect(parseConfig('', 'x.toml', '/').engine.kvMemoryMb).toBe(256);
  });

  it('names an unknown key or section', () => {
    expect(() => parseConfig('[engine]\npage_sise = 32\n', 'x.toml', '/')).toThrow(/x\.toml: unknown key engine\.page_sise; known: engine\.page_size/);
    expect(() => parseConfig('[engin]\n', 'x.toml', '/')).toThrow(/unknown section \[engin\]/);
  });

  it('names a key with a bad value', () => {
    expect(() => parseConfig('[engine]\npage_size = 0\n', 'x.toml', '/')).toThrow(/engine\.page_size must be a positive integer, got 0/);
    expect(() => parseConfig('[engine]\nprefix_caching = "yes"\n', 'x.toml', '/')).toThrow(/engine\.prefix_caching must be true or false/);
    expect(() => parseConfig('[model]\ncreate_if_missing = "huge"\n', 'x.toml', '/')).toThrow(/model\.create_if_missing must be one of "", "tiny", "bench", got "huge"/);
    expect(() => parseConfig('[engine\n', 'x.toml', '/')).toThrow(/x\.toml: not valid TOML/);
  });
});
