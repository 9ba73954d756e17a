/** What a guest may hand to its caller: checked in the guest worker, and again on the host. */

/** Characters of a child's input (runtime.launch), checked in the guest's worker and again on the host. */
export const MAX_CHILD_INPUT = 4 << 20;

/** Largest event or result a guest may hand over, in characters. */
export const MAX_OUTPUT = 16 << 20;

/** Why an event's name or an event's or result's data may not be handed over, or null. */
export function sizeProblem(what: string, data: unknown): string | null {
  if (typeof data !== 'string') return `${what} is not a string`;
  return data.length > MAX_OUTPUT ? `${what} is at most ${MAX_OUTPUT} characters, got ${data.length}` : null;
}

export function eventNameProblem(event: unknown): string | null {
  return typeof event === 'string' && /^[A-Za-z0-9_.:-]{1,128}$/.test(event) ? null : `invalid event name ${JSON.stringify(String(event).slice(0, 130))} (letters, digits and _ . : - only)`;
}

/** Headers that frame the response or the connection: the server's alone (one from a guest could split a keep-alive stream). */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer', 'host', 'http2-settings']);

/** Why a status or header may not be set, or null. Checked in the guest and again on the host. */
export function statusProblem(status: unknown): string | null {
  return Number.isInteger(status) && (status as number) >= 200 && (status as number) <= 599 ? null : `HTTP status ${String(status)} is not in 200..599`;
}

export function headerProblem(name: unknown, value: unknown): string | null {
  if (typeof name !== 'string' || typeof value !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value)) {
    return `invalid HTTP header ${JSON.stringify(String(name).slice(0, 130))}`;
  }
  return FRAMING.has(name.toLowerCase()) ? `the ${name.toLowerCase()} header is the server's to set (it frames the response)` : null;
}

