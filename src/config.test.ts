import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from './config.ts';

describe('configuration', () => {
  it('reads the shipped pie.toml', () => {
    const c = loadConfig(new URL('../pie.toml', import.meta.url).pathname);
    expect(c.model.path).toBe('models/default');
    expect(c.engine).toEqual({ pageSize: 16, kvMemoryMb: 256, maxTokensPerStep: 512, maxRowsPerStep: 256, prefixCaching: true, threads: 0, spinWait: true, ownThread: true, grammarCacheSize: 128, grammarCompileTimeoutMs: 1000, snapshotPagesPerTenant: 0, queueTimeoutMs: 30000 });
    expect(c.metrics).toEqual({ names: 'pie' });
  });

  it("switches the metric names to vLLM's with [metrics] names, and names a scheme it does not know", () => {
    expect(parseConfig('', 'x.toml', '/').metrics.names).toBe('pie');
    expect(parseConfig('[metrics]\nnames = "vllm"\n', 'x.toml', '/').metrics.names).toBe('vllm');
    expect(() => parseConfig('[metrics]\nnames = "prometheus"\n', 'x.toml', '/')).toThrow(/metrics\.names must be one of "pie", "vllm", got "prometheus"/);
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

  it('reads [[keys]] and [[routes]] and names a bad entry', () => {
    const c = parseConfig('[[keys]]\nkey_env = "K"\nscopes = ["chat"]\n[[routes]]\npath = "/v1/x/:id"\ninferlet = "a.ts"\nmethod = "get"\n', 'x.toml', '/');
    expect(c.keys).toEqual([{ key: '', keyEnv: 'K', tenant: '', scopes: ['chat'], models: ['*'], kvWeight: 1, kvPages: 0 }]);
    expect(c.routes[0]).toMatchObject({ method: 'GET', path: '/v1/x/:id', inferlet: 'a.ts', scope: 'custom', headers: [] });
    expect(() => parseConfig('[[keys]]\nscopes = ["chat"]\n', 'x.toml', '/')).toThrow(/keys\[0\] needs exactly one of key or key_env/);
    expect(() => parseConfig('[[routes]]\ninferlet = "a.ts"\n', 'x.toml', '/')).toThrow(/routes\[0\]\.path is required/);
    expect(() => parseConfig('[[routes]]\npath = "/x"\ninferlet = "a.ts"\nmethod = "FETCH"\n', 'x.toml', '/')).toThrow(/routes\[0\]\.method must be one of/);
    expect(() => parseConfig('[[routes]]\npath = "/x"\ninferlet = "a.ts"\nscopes = "x"\n', 'x.toml', '/')).toThrow(/unknown key routes\[0\]\.scopes/);
    expect(() => parseConfig('[server]\nport = 70000\n', 'x.toml', '/')).toThrow(/server\.port must be a port number/);
    expect(() => parseConfig('[keys]\nkey = "x"\n', 'x.toml', '/')).toThrow(/keys must be an array of tables/);
  });
});
