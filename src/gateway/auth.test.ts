import { describe, expect, it } from 'vitest';
import type { KeyConfig } from '../config.ts';
import { resolveKeys, tenantShares } from './auth.ts';

const key = (k: Partial<KeyConfig>): KeyConfig => ({ key: '', keyEnv: '', tenant: '', scopes: ['*'], models: ['*'], kvWeight: 1, kvPages: 0, ...k });

describe('API keys', () => {
  it("gives a key without a tenant its own, and each tenant its keys' share of the KV pool", () => {
    const keys = resolveKeys([key({ key: 'a', tenant: 't', kvWeight: 2, kvPages: 10 }), key({ key: 'b', tenant: 't', kvWeight: 2, kvPages: 10 }), key({ key: 'c' })], {}, '');
    expect(keys[2]!.tenant).toMatch(/^key-[0-9a-f]{16}$/);
    const shares = tenantShares(keys);
    expect(shares.get('t')).toEqual({ weight: 2, maxPages: 10 });
    expect(shares.get(keys[2]!.tenant)).toEqual({ weight: 1, maxPages: Infinity });
  });

  it("gives the environment's key the share its tenant has from [[keys]]", () => {
    const keys = resolveKeys([key({ key: 'a', tenant: 'default', kvPages: 10 })], { PIE_API_KEY: 'env' }, 'PIE_API_KEY');
    expect(keys).toHaveLength(2);
    expect(tenantShares(keys).get('default')).toEqual({ weight: 1, maxPages: 10 });
  });

  it('refuses keys of one tenant that disagree on its share', () => {
    const keys = resolveKeys([key({ key: 'a', tenant: 't', kvPages: 10 }), key({ key: 'b', tenant: 't' })], {}, '');
    expect(() => tenantShares(keys)).toThrow(/tenant "t" give it different kv_weight or kv_pages/);
  });
});
