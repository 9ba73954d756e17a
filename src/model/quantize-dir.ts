/**
 * `pie model quantize`: a float model directory into a quantized one the
 * engine loads directly. The linear layers (and the head and embedding, unless
 * they stay float) are stored as `src/model/weights.ts` reads them
 * (`.qweight`, `.scales`, `.qzeros`), the rest as float32, and config.json
 * records the quantization (`quantization_config`, src/model/config.ts).
 * Every other file (tokenizer, chat template, generation config, licence) is
 * copied as it is.
 */
import { copyFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { quantizationConfigJson, type WeightQuantization } from './config.ts';
import { ModelLoadError } from './errors.ts';
import { loadModelText } from './load.ts';
import { isGgufPath } from './gguf/gguf-model.ts';
import { checkModelOut, writeModelDir } from './write-dir.ts';
import { tensorBytes, writeSafetensors } from './safetensors.ts';
import { bindWeights, describeQuantization, readModelTensors, weightTensors } from './weights.ts';

/** Weights and files that describe them: not copied (the quantized weights replace them). */
const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|gguf|onnx|onnx_data|msgpack|h5|ckpt)$|^model\.safetensors\.index\.json$|^pytorch_model\.bin\.index\.json$|^config\.json$/;

export interface QuantizeResult {
  /** Bytes of the float weights read and of the weights written. */
  inBytes: number;
  outBytes: number;
  files: string[];
}

export function quantizeModelDir(srcArg: string, outArg: string, q: WeightQuantization): QuantizeResult {
  const src = resolve(srcArg);
  checkModelOut(outArg); // before the weights are read: a bad output folder costs nothing
  if (isGgufPath(src)) throw new ModelLoadError(`${src} is a GGUF file: \`pie model import-gguf FILE OUT_DIR [--quantize q4|q8]\` makes a directory of it (its quantized tensors keep their formats)`);
  const text = loadModelText(src);
  if (text.config.quantization) throw new ModelLoadError(`${src} is already quantized (${describeQuantization(text.config.quantization)}): quantize the float model instead`);
  const tensors = readModelTensors(src);
  const inBytes = tensorBytes(tensors.floats.values());
  const weights = bindWeights(text.config, tensors, src, q);
  return writeModelDir(outArg, (tmp) => {
    const files: string[] = [];
    for (const name of readdirSync(src)) {
      const from = join(src, name);
      if (WEIGHT_FILE.test(name) || !statSync(from).isFile()) continue;
      copyFileSync(from, join(tmp, name)); // a hub snapshot's links are followed
      files.push(name);
    }
    const raw = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    raw.quantization_config = quantizationConfigJson(q);
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(raw, null, 2) + '\n');
    const entries = weightTensors(weights);
    writeSafetensors(join(tmp, 'model.safetensors'), entries);
    files.push('config.json', 'model.safetensors');
    return { inBytes, outBytes: tensorBytes(entries.values()), files: files.sort() };
  });
}
