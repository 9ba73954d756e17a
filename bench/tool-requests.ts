/**
 * Tool-call requests through the gateway, beside plain chat, for
 * bench:structured: N concurrent streaming POST /v1/chat/completions, plain
 * (no tools) or with a tool and tool_choice "required" (its arguments hold at
 * least 64 strings, so a call runs to max_tokens as text does), temperature
 * 0.8 with seeds, max_tokens each. Throughput is all
 * completion tokens over the batch's wall time; time to first delta is request
 * sent → first content delta (plain) or first tool_calls delta (tools). The
 * client runs on the gateway's thread, alike for both.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config.ts';
import type { Engine } from '../src/engine/index.ts';
import { serve } from '../src/gateway/start.ts';
import { median } from './stats.ts';

// One tool whose arguments cannot be complete within max_tokens (at least 64 notes), so a call runs
// to max_tokens as text does and both kinds of request produce the same number of tokens.
const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'record_notes',
      description: 'Write notes down',
      parameters: { type: 'object', properties: { notes: { type: 'array', items: { type: 'string' }, minItems: 64 } }, required: ['notes'], additionalProperties: false },
    },
  },
];

interface One {
  firstMs: number;
  tokens: number;
}

async function streamOne(url: string, body: object): Promise<One> {
  const t0 = performance.now();
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let first = NaN;
  let tokens = -1;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const data = buf.slice(0, i).replace(/^data: /, '');
      buf = buf.slice(i + 2);
      if (data === '[DONE]' || data === '') continue;
      const j = JSON.parse(data);
      if (j.error) throw new Error(JSON.stringify(j.error));
      const d = j.choices?.[0]?.delta;
      if (Number.isNaN(first) && (d?.content || d?.tool_calls)) first = performance.now() - t0;
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  if (tokens < 0) throw new Error('no usage chunk');
  return { firstMs: first, tokens };
}

export interface ToolRow {
  streams: number;
  plainTps: number;
  toolsTps: number;
  ratio: number;
  plainFirstMs: number;
  toolsFirstMs: number;
}

/** Serves `engine` through the gateway and runs both kinds of request at each concurrency. */
export async function toolRequests(engine: Engine, streams: number[], maxTokens: number, rounds: number): Promise<ToolRow[]> {
  const root = join(import.meta.dirname, '..');
  const dataDir = mkdtempSync(join(tmpdir(), 'pie-bench-tools-'));
  const config = parseConfig(`[server]\nport = 0\ndata_dir = ${JSON.stringify(dataDir)}\napi_key_env = ""\n[inferlets]\ncache_dir = ${JSON.stringify(join(tmpdir(), 'pie-bench-components'))}\n`, 'bench.toml', root);
  const serving = await serve({ config, engines: [engine], log: () => {}, env: {} });
  await serving.loaded;
  const url = `${serving.url}/v1/chat/completions`;
  const base = { model: engine.model.name, messages: [{ role: 'user', content: 'Take notes on the meeting.' }], temperature: 0.8, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true } };
  const batch = async (n: number, tools: boolean, round: number) => {
    const t0 = performance.now();
    const all = await Promise.all(Array.from({ length: n }, (_, i) => streamOne(url, { ...base, seed: round * 1000 + i, ...(tools ? { tools: TOOLS, tool_choice: 'required' } : {}) })));
    const ms = performance.now() - t0;
    return { tps: all.reduce((a, x) => a + x.tokens, 0) / (ms / 1000), firstMs: median(all.map((x) => x.firstMs)) };
  };
  await batch(1, true, 99); // warm: instances, the tools' grammar compiled once
  const rows: ToolRow[] = [];
  for (const n of streams) {
    const plain: Array<{ tps: number; firstMs: number }> = [];
    const tools: Array<{ tps: number; firstMs: number }> = [];
    for (let r = 0; r < rounds; r++) {
      plain.push(await batch(n, false, r));
      tools.push(await batch(n, true, r));
    }
    rows.push({
      streams: n,
      plainTps: median(plain.map((x) => x.tps)),
      toolsTps: median(tools.map((x) => x.tps)),
      ratio: median(plain.map((p, i) => tools[i]!.tps / p.tps)),
      plainFirstMs: median(plain.map((x) => x.firstMs)),
      toolsFirstMs: median(tools.map((x) => x.firstMs)),
    });
    console.error(`tools N=${n}: required tool calls / plain chat ${(100 * rows.at(-1)!.ratio).toFixed(1)}%`);
  }
  await serving.close();
  return rows;
}
