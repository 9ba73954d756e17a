/**
 * An invocation's input as the guest gets it: JSON text. Strings enter the
 * guest as UTF-8 (WIT), so a lone UTF-16 surrogate becomes U+FFFD here, once,
 * rather than trapping it. Throws for what JSON cannot write (a BigInt, a
 * cycle) before anything is registered.
 */
export function inputJson(input: unknown): string {
  return JSON.stringify(wellFormed(input ?? null));
}

/** A JSON value with every string (keys included) well-formed UTF-16: lone surrogates replaced by U+FFFD. */
function wellFormed(v: unknown): unknown {
  if (typeof v === 'string') return v.toWellFormed();
  if (Array.isArray(v)) return v.map(wellFormed);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k.toWellFormed(), wellFormed(x)]));
  return v;
}
