/**
 * `pie model import-gguf FILE OUT_DIR`: a GGUF file as a model directory the
 * engine loads directly, without reading the GGUF again: config.json (with a
 * `quantization_config` where weights are quantized), tokenizer.json and
 * tokenizer_config.json (special tokens, chat template), generation_config.json
 * (BOS and stop tokens), and one model.safetensors with the weights as the
 * GGUF load maps them (quantized ones as `.qweight`/`.scales`/`.qzeros`, each
 * with its own block and bits).
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { quantizationConfigJson, type WeightQuantization } from '../config.ts';
import { ModelLoadError } from '../errors.ts';
import { tensorBytes, writeSafetensors } from '../safetensors.ts';
import { isQuantized, weightTensors, type ModelWeights } from '../weights.ts';
import { readGgufHeader } from './gguf-file.ts';
import { checkModelOut, writeModelDir } from '../write-dir.ts';
import { ggufModelText, ggufRawConfig, ggufWeights } from './gguf-model.ts';
import { ggufTokenizer } from './gguf-tokenizer.ts';

/** What a directory's config records for weights imported from GGUF: the layers' bits, the head's; zero points are per weight. */
function recordedQuantization(w: ModelWeights): WeightQuantization | null {
  const first = w.layers[0]?.q;
  if (!first || !isQuantized(first)) return null;
  return { bits: first.quantized.bits, headBits: isQuantized(w.lmHead) ? w.lmHead.quantized.bits : null, block: first.quantized.block, zeroPoints: false };
}

export function importGguf(path: string, outArg: string, quantize: WeightQuantization | null = null): { files: string[]; bytes: number } {
  const out = checkModelOut(outArg); // before the file is read: a bad output folder costs nothing
  const file = readGgufHeader(resolve(path));
  const text = ggufModelText(file);
  const weights = ggufWeights(file, text.config, quantize);
  const tok = ggufTokenizer(file.metadata, file.path);
  const raw = ggufRawConfig(file);
  const q = recordedQuantization(weights);
  // A directory records one choice for the layers and one for the head and embedding.
  const layersAlike = weights.layers.every((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].every((x) => isQuantized(x) === (q !== null)));
  const headAlike = isQuantized(weights.embed) === isQuantized(weights.lmHead) && (q !== null || !isQuantized(weights.embed));
  if (!layersAlike || !headAlike) throw new ModelLoadError(`${file.path}: its weights mix quantized and float tensors in a way a directory cannot record; serve the GGUF file itself`);
  if (q) raw.quantization_config = quantizationConfigJson(q);
  return writeModelDir(out, (tmp) => {
    const json = (name: string, value: unknown) => writeFileSync(join(tmp, name), JSON.stringify(value, null, 2) + '\n');
    json('config.json', raw);
    json('tokenizer.json', tok.json);
    json('tokenizer_config.json', tok.config);
    json('generation_config.json', { ...(tok.bosTokenId !== null ? { bos_token_id: tok.bosTokenId } : {}), eos_token_id: text.eosTokenIds });
    const entries = weightTensors(weights);
    writeSafetensors(join(tmp, 'model.safetensors'), entries);
    return { files: ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'], bytes: tensorBytes(entries.values()) };
  });
}
