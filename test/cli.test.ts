/** The pie command, run as a user runs it. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { haveStories, randomModelDir, REPO_ROOT, SKIP_STORIES, STORIES_DIR } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'pie-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function pie(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin/pie.js'), ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('pie', () => {
  it('serves: listens at once, becomes ready, answers a chat request, stops on SIGTERM', async () => {
    const config = join(work, 'serve.toml');
    writeFileSync(config, `[server]\nport = 0\ndata_dir = "serve-data"\napi_key_env = ""\n[inferlets]\ncache_dir = ${JSON.stringify(join(tmpdir(), 'pie-gateway-test-components'))}\n`);
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/pie.js'), 'serve', '--config', config, '--model', `tiny=${randomModelDir()}`], { cwd: REPO_ROOT });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const deadline = Date.now() + 60_000;
      while (!/pie: ready/.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const url = /listening on (http:\/\/\S+)/.exec(stderr)![1]!;
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }),
      });
      expect(r.status).toBe(200);
      expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(3);
      expect(existsSync(join(work, 'serve-data', 'responses.sqlite'))).toBe(true);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/loopback only/);
    expect(stderr).toMatch(/shutting down/);
  });

  it('generates text and reports tokens per second', () => {
    const r = pie('generate', '--model', randomModelDir(), '--prompt', 'abc', '--max-tokens', '7', '--temperature', '0.7', '--seed', '3');
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('abc')).toBe(true);
    expect(r.stderr).toMatch(/^7 tokens in [\d.]+ s: [\d.]+ tokens\/s .*prompt 4 tokens; finished: length\) on /m);
    const again = pie('generate', '--model', randomModelDir(), '--prompt', 'abc', '--max-tokens', '7', '--temperature', '0.7', '--seed', '3');
    expect(again.stdout).toBe(r.stdout);
  });

  it('creates a random model, and creates the configured default model when it is missing', () => {
    const out = join(work, 'rand');
    expect(pie('model', 'create-random', out, '--preset', 'tiny', '--seed', '2').code).toBe(0);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    // Relative paths in a config file are relative to its own folder.
    mkdirSync(join(work, 'conf'), { recursive: true });
    const config = join(work, 'conf', 'c.toml');
    writeFileSync(config, '[model]\npath = "fresh"\n[engine]\nkv_memory_mb = 16\n');
    const r = pie('generate', '--config', config, '--max-tokens', '3');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/No model at .*fresh: created a "tiny" random-weight model there/);
    expect(r.stderr).toMatch(/npx pie model import-llama2c/);
    expect(existsSync(join(work, 'conf', 'fresh', 'config.json'))).toBe(true);
  });

  it("prints a command's usage for --help and exits 0, for every command", () => {
    for (const [args, shows] of [
      [['serve', '--help'], 'pie serve'],
      [['generate', '-h'], 'pie generate'],
      [['model', 'create-random', '--help'], 'pie model create-random'],
      [['build', '--help'], 'pie build'],
      [['run', 'x.wasm', '--help'], 'pie run'],
    ] as const) {
      const r = pie(...args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toContain(shows);
      expect(r.stdout).not.toContain('pie model import'); // that command's lines only
    }
  });

  it('explains bad usage, bad config and bad models, with distinct exit codes', () => {
    const usage = pie('generate', '--max-tokens', 'many');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--max-tokens must be an integer, got "many"/);
    expect(pie('frobnicate').stderr).toMatch(/unknown command "frobnicate"/);
    const cfg = join(work, 'bad.toml');
    writeFileSync(cfg, '[engine]\nthreads = -1\n');
    const bad = pie('generate', '--config', cfg);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/engine\.threads must be a non-negative integer/);
    const missing = pie('generate', '--model', join(work, 'nope'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/model directory .*nope does not exist/);
  });

  it.skipIf(!haveStories)(`imports stories260K and reproduces its greedy text ${SKIP_STORIES}`, () => {
    const out = join(work, 'stories');
    const imp = pie('model', 'import-llama2c', join(STORIES_DIR, 'stories260K.bin'), join(STORIES_DIR, 'tok512.bin'), out);
    expect(imp.code).toBe(0);
    const r = pie('generate', '--model', out, '--max-tokens', '40');
    expect(r.stdout).toMatch(/^Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\./);
  });

  it('builds an inferlet and runs it: streamed text, then the result', () => {
    const wasm = join(work, 'tc.wasm');
    const b = pie('build', 'inferlets/examples/text-completion.ts', '-o', wasm);
    expect(b.code).toBe(0);
    expect(b.stderr).toMatch(/wrote .*tc\.wasm \([\d.]+ MB, qjs\)/);
    const cfg = join(work, 'run.toml');
    writeFileSync(cfg, '[engine]\nkv_memory_mb = 16\n[inferlets]\ncache_dir = "components"\n');
    const r = pie('run', wasm, '--model', randomModelDir(), '--config', cfg, '--', '{"prompt": "abc", "max_tokens": 5}');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    const result = JSON.parse(lines.at(-1)!);
    expect(result).toMatchObject({ finish_reason: 'length', usage: { completion_tokens: 5 } });
    expect(r.stdout.startsWith(result.text)).toBe(true); // streamed before the result
    expect(existsSync(join(work, 'components'))).toBe(true);
  });

  it('explains a source that imports what an inferlet may not, a refused component, and bad input', () => {
    const src = join(work, 'bad.ts');
    writeFileSync(src, "import { readFileSync } from 'node:fs';\nexport const run = () => readFileSync('/etc/passwd');\n");
    const b = pie('build', src, '-o', join(work, 'bad.wasm'));
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/imports node:fs: an inferlet may import only the SDK and pie:inferlet/);
    const notWasm = join(work, 'not.wasm');
    writeFileSync(notWasm, 'hello');
    const refused = pie('run', notWasm, '--model', randomModelDir(), '--config', join(work, 'run.toml'));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/not a valid WebAssembly component/);
    const input = pie('run', notWasm, '--', '{not json');
    expect(input.code).toBe(2);
    expect(input.stderr).toMatch(/the input after -- must be JSON/);
  });
});
