/**
 * The model's weights in float32, keyed by role rather than by file name, with
 * every shape checked against the config. Linear weights keep Hugging Face's
 * [out, in] layout.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelConfig } from './config.ts';
import { kvDim } from './config.ts';
import { ModelLoadError } from './errors.ts';
import { readSafetensors, type Tensor } from './safetensors.ts';

export interface LayerWeights {
  inputNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  qBias: Tensor | null;
  kBias: Tensor | null;
  vBias: Tensor | null;
  qNorm: Tensor | null;
  kNorm: Tensor | null;
  postNorm: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
}

export interface ModelWeights {
  embed: Tensor;
  layers: LayerWeights[];
  norm: Tensor;
  /** [vocab, hidden]; the embedding itself when the head is tied. */
  lmHead: Tensor;
}

/** Reads all tensors of a model directory: one .safetensors file, or shards listed in model.safetensors.index.json. */
export function readModelTensors(dir: string): Map<string, Tensor> {
  const index = join(dir, 'model.safetensors.index.json');
  let files: string[];
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = JSON.parse(readFileSync(index, 'utf8')).weight_map;
    } catch (err) {
      throw new ModelLoadError(`${index}: not valid JSON (${(err as Error).message})`);
    }
    if (!map || typeof map !== 'object') throw new ModelLoadError(`${index}: no "weight_map" object`);
    files = [...new Set(Object.values(map))];
    for (const f of files) {
      if (!existsSync(join(dir, f))) throw new ModelLoadError(`${index} names shard ${f}, which is missing from ${dir}`);
    }
  } else {
    files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
    if (files.length === 0) throw new ModelLoadError(`${dir}: no *.safetensors weights file`);
  }
  const all = new Map<string, Tensor>();
  for (const f of files) for (const [k, v] of readSafetensors(join(dir, f))) all.set(k, v);
  return all;
}

export function bindWeights(config: ModelConfig, tensors: Map<string, Tensor>, source: string): ModelWeights {
  const H = config.hiddenSize;
  const qDim = config.numHeads * config.headDim;
  const kv = kvDim(config);
  const I = config.intermediateSize;
  const get = (name: string, shape: number[]): Tensor => {
    const t = tensors.get(name);
    if (!t) throw new ModelLoadError(`${source}: missing tensor ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelLoadError(`${source}: tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    return t;
  };
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}.`;
    layers.push({
      inputNorm: get(`${p}input_layernorm.weight`, [H]),
      q: get(`${p}self_attn.q_proj.weight`, [qDim, H]),
      k: get(`${p}self_attn.k_proj.weight`, [kv, H]),
      v: get(`${p}self_attn.v_proj.weight`, [kv, H]),
      o: get(`${p}self_attn.o_proj.weight`, [H, qDim]),
      qBias: config.attentionBias ? get(`${p}self_attn.q_proj.bias`, [qDim]) : null,
      kBias: config.attentionBias ? get(`${p}self_attn.k_proj.bias`, [kv]) : null,
      vBias: config.attentionBias ? get(`${p}self_attn.v_proj.bias`, [kv]) : null,
      qNorm: config.qkNorm ? get(`${p}self_attn.q_norm.weight`, [config.headDim]) : null,
      kNorm: config.qkNorm ? get(`${p}self_attn.k_norm.weight`, [config.headDim]) : null,
      postNorm: get(`${p}post_attention_layernorm.weight`, [H]),
      gate: get(`${p}mlp.gate_proj.weight`, [I, H]),
      up: get(`${p}mlp.up_proj.weight`, [I, H]),
      down: get(`${p}mlp.down_proj.weight`, [H, I]),
    });
  }
  const embed = get('model.embed_tokens.weight', [config.vocabSize, H]);
  const tied = config.tieWordEmbeddings || !tensors.has('lm_head.weight');
  return {
    embed,
    layers,
    norm: get('model.norm.weight', [H]),
    lmHead: tied ? embed : get('lm_head.weight', [config.vocabSize, H]),
  };
}
