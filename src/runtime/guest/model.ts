/** pie:inferlet/model: tokenizers live in the worker, so none of these leave it. */
import type { ModelText } from '../../model/load.ts';
import { GuestResultError, type GuestEnv } from './env.ts';
import { hostWork } from './host-work.ts';

/**
 * Refuses, before tokenizing it, a text no context of the model can hold: it
 * is at least length / (the longest token's bytes × 3) tokens (UTF-16 units
 * never outnumber UTF-8 bytes; the 3 allows for normalization that composes
 * characters). A 3 MB prompt is a 400 at once, not seconds of tokenizing.
 */
export function checkEncodable(text: ModelText, s: string): void {
  const limit = text.config.maxPositionEmbeddings;
  const atLeast = Math.ceil(s.length / (text.tokenizer.maxTokenBytes * 3));
  if (atLeast > limit) {
    throw new GuestResultError('context-length-exceeded', `a text of ${s.length} characters is at least ${atLeast} tokens; the model accepts at most ${limit}`);
  }
}

/** Tokenizes a text for a guest, bounded (checkEncodable) and marked as host work for the watchdog. */
export function encodeFor(text: ModelText, s: string, encode: () => number[]): Uint32Array {
  checkEncodable(text, s);
  return Uint32Array.from(hostWork(encode));
}

export interface GuestModel {
  readonly name: string;
  readonly text: ModelText;
}

export function guestModel(env: GuestEnv) {
  class Model implements GuestModel {
    readonly name: string;
    readonly text: ModelText;
    private constructor(name: string, text: ModelText) {
      this.name = name;
      this.text = text;
    }
    static load(name: string): Model {
      if (!env.models.has(name)) throw new GuestResultError('not-found', `no model named "${name}" (available: ${[...env.models.keys()].join(', ') || 'none'})`);
      return new Model(name, env.modelText(name));
    }
    info() {
      const { config, tokenizer, eosTokenIds, bosTokenId, chatTemplate } = this.text;
      return {
        name: this.name,
        architecture: config.architecture,
        vocabSize: config.vocabSize,
        contextLength: config.maxPositionEmbeddings,
        pageSize: env.models.get(this.name)!.pageSize,
        eosTokenIds: Uint32Array.from(eosTokenIds),
        bosTokenId: bosTokenId ?? tokenizer.bosTokenId ?? undefined,
        hasChatTemplate: !chatTemplate.isFallback,
      };
    }
    encode(text: string, addBos: boolean) {
      return encodeFor(this.text, text, () => this.text.tokenizer.encode(text, { addBos }));
    }
    decode(tokens: Uint32Array, skipSpecialTokens: boolean) {
      return this.text.tokenizer.decode(Array.from(tokens), { skipSpecial: skipSpecialTokens });
    }
    tokenId(token: string) {
      return this.text.tokenizer.tokenToId(token);
    }
    tokenBytes(tokens: Uint32Array) {
      return Array.from(tokens, (t) => this.text.tokenizer.tokenBytes(t));
    }
    specialTokens() {
      const tok = this.text.tokenizer;
      return [...tok.specialIds, ...tok.markerIds].sort((a, b) => a - b).map((id) => [tok.idToToken(id) ?? '', id] as [string, number]);
    }
  }
  return { Model };
}
