/**
 * pie:inferlet/grammar. The ABI is fixed now; matchers arrive with
 * structured outputs, so every constructor answers `unsupported` until then.
 */
import { GuestResultError } from '../guest-env.ts';

export function guestGrammar() {
  const unsupported = (): never => {
    throw new GuestResultError('unsupported', 'grammar matchers are not available yet in this server');
  };
  class Matcher {
    static fromJsonSchema = unsupported;
    static fromRegex = unsupported;
    static fromEbnf = unsupported;
    allowed = unsupported;
    accept = unsupported;
    isTerminated = unsupported;
    reset = unsupported;
  }
  return { Matcher };
}
