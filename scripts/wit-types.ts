/**
 * Regenerates the SDK's TypeScript declarations of the ABI
 * (inferlets/sdk/wit-types) from wit/ with jco. Run after changing the WIT:
 * npm run wit:types
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'inferlets/sdk/wit-types');
_setPreopens({ '/': '/' } as never); // jco's WIT reader runs as a component with WASI files
const { types } = await import('@bytecodealliance/jco');
const files: Record<string, Uint8Array> = await (types as (w: string, o: object) => Promise<never>)(join(root, 'wit'), { worldName: 'inferlet', guest: true, outDir: out + '/' });
rmSync(out, { recursive: true, force: true });
for (const [path, data] of Object.entries(files)) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}
console.log(`wrote ${Object.keys(files).length} files to ${out}`);
