import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from '@bytecodealliance/jco';
import { afterAll, describe, expect, it } from 'vitest';
import { ComponentLoadError, ComponentStore } from './component-store.ts';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'pie-store-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A component that calls function `f` of the imported interface `name` from its `run`. */
const importing = (name: string) =>
  parse(`(component
    (import "${name}" (instance $imp (export "f" (func))))
    (core func $f (canon lower (func $imp "f")))
    (core module $m (import "imp" "f" (func $f)) (func (export "run") (call $f)))
    (core instance $i (instantiate $m (with "imp" (instance (export "f" (func $f))))))
    (func (export "run") (canon lift (core func $i "run"))))`);

describe('ComponentStore', () => {
  it('refuses a component that imports an interface outside the ABI and the WASI subset, naming the import', async () => {
    const store = new ComponentStore(tempDir());
    const bytes = await importing('wasi:keyvalue/store@0.2.0-draft');
    const err = await store.load(bytes).catch((e) => e);
    expect(err).toBeInstanceOf(ComponentLoadError);
    expect(err.message).toContain('wasi:keyvalue/store@0.2.0-draft is not granted');
  });

  it('refuses sockets and HTTP too, and a wrong ABI version', async () => {
    const store = new ComponentStore(tempDir());
    for (const name of ['wasi:sockets/tcp@0.2.3', 'wasi:http/outgoing-handler@0.2.3', 'pie:inferlet/runtime@9.0.0']) {
      const err = await store.load(await importing(name)).catch((e) => e);
      expect(err.message).toContain(name);
    }
  });

  it('refuses bytes that are not a component, and a component without run', async () => {
    const store = new ComponentStore(tempDir());
    await expect(store.load(new Uint8Array([0, 97, 115, 109, 9, 9]))).rejects.toThrow(/not a valid WebAssembly component/);
    // `run` with the wrong signature: jco would bind it, the host would misread its result
    const wrongRun = await parse(`(component (core module $m (func (export "run"))) (core instance $i (instantiate $m)) (func (export "run") (canon lift (core func $i "run"))))`);
    await expect(store.load(wrongRun)).rejects.toThrow(/does not export `run: func\(\) -> result<_, string>`/);
    await expect(store.load(await parse('(component)'))).rejects.toThrow(/does not export `run/);
    await expect(store.load('/no/such/file.wasm')).rejects.toThrow(/cannot read/);
  });
});

describe('ComponentStore cache', () => {
  it('transpiles once per content hash and reuses the folder across stores', async () => {
    const dir = tempDir();
    const bytes = await parse(
      `(component (core module $m (memory (export "memory") 1) (func (export "run") (result i32) i32.const 0)) (core instance $i (instantiate $m)) (func (export "run") (result (result (error string))) (canon lift (core func $i "run") (memory (core memory $i "memory")))))`,
    );
    const a = await new ComponentStore(dir).load(bytes);
    expect(existsSync(join(a.dir, 'component.js'))).toBe(true);
    if (!process.env.JCO_DEBUG) expect(readFileSync(join(a.dir, 'component.js'), 'utf8')).toContain('const _debugLog = () => {};'); // jco's per-call env lookup is gone
    const b = await new ComponentStore(dir).load(bytes);
    expect(b.dir).toBe(a.dir);
    expect(readdirSync(dir)).toHaveLength(1);
  });
});
