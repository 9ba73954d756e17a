/** pie:inferlet/model: tokenizers live in the worker, so none of these leave it. */
import type { ModelText } from '../../model/load.ts';
import { GuestResultError, type GuestEnv } from '../guest-env.ts';

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
      return Uint32Array.from(this.text.tokenizer.encode(text, { addBos }));
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
