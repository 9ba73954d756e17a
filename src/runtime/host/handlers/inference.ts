/**
 * pie:inferlet/inference: the step-level forward pass and the host-run
 * generate loop. A generation streams to the caller from here, inside the
 * engine's step; the guest only pulls chunks if it asks for them.
 */
import { TokenHistory, type GenerationChunk, type GenerationResult, type TokenLogprob } from '../../../engine/index.ts';
import type { ChatTemplate } from '../../../model/chat-template.ts';
import { newCallId, ToolCallStream, type ToolCallDelta } from '../../../model/tool-call-stream.ts';
import { detectToolFormat, parseToolCalls } from '../../../model/tool-calls.ts';
import { AbiError } from '../../abi.ts';
import type { HeldGeneration, Invocation } from '../invocation.ts';
import { generationUsing, heldMatcher } from './grammar.ts';
import { heldContext } from './context.ts';
import { toAbiError } from './errors.ts';
import type { Handlers, OpsIn } from './host-side.ts';
import { prepareOutput, runsToFlags, toSamplingParams } from './sampling.ts';
import type { WitChunk, WitForwardArgs, WitGenerateArgs, WitGenerationResult, WitOutputRequest } from '../../ops.ts';

/** Logits one forward call may bring back to the host (64 MiB of floats: 512 rows at a 32k vocabulary). */
export const MAX_FORWARD_FLOATS = 16 << 20;

const witLogprobs = (lps: TokenLogprob[] | undefined) =>
  (lps ?? []).map((l) => ({ token: l.token, logprob: l.logprob, top: (l.top ?? []).map((t) => ({ token: t.token, logprob: t.logprob })) }));

const wit = (c: GenerationChunk): WitChunk => ({ text: c.text, tokens: Uint32Array.from(c.tokens), logprobs: witLogprobs(c.logprobs) });

/** Turns a chunk's text into its event data: the bare text, or the template with `{{delta}}` (and `{{seq}}`) filled. */
export function streamData(template: string | undefined, firstSeq = 0): (text: string, index: number) => string {
  if (template === undefined) return (text) => text;
  const at = template.indexOf(DELTA);
  if (at < 0) throw new AbiError('invalid-argument', `a stream template must contain ${DELTA}`);
  const parts = [template.slice(0, at), template.slice(at + DELTA.length)];
  const seqIn = parts.findIndex((p) => p.includes(SEQ));
  if (seqIn < 0) return (text) => parts[0] + JSON.stringify(text) + parts[1];
  const p = parts[seqIn]!;
  const [a, b] = [p.slice(0, p.indexOf(SEQ)), p.slice(p.indexOf(SEQ) + SEQ.length)];
  return seqIn === 0
    ? (text, i) => a + (firstSeq + i) + b + JSON.stringify(text) + parts[1]
    : (text, i) => parts[0] + JSON.stringify(text) + a + (firstSeq + i) + b;
}

const DELTA = '{{delta}}';
const SEQ = '{{seq}}';

/**
 * A generation's stream split into content events (`content`: the stream's
 * own template) and tool-call events (`templates`) in the model's format;
 * `push` and `end` emit and return how many events went out.
 */
function toolCallEvents(templates: { start: string; arguments: string }, chatTemplate: ChatTemplate, firstSeq: number, emit: (data: string) => void) {
  const slots = { start: ['{{index}}', '{{id}}', '{{name}}'], arguments: ['{{index}}', '{{delta}}'] } as const;
  for (const [name, required] of Object.entries(slots)) {
    for (const slot of required) if (!templates[name as keyof typeof slots].includes(slot)) throw new AbiError('invalid-argument', `the ${name} template of tool calls must contain ${slot}`);
  }
  const format = detectToolFormat(chatTemplate);
  const stream = new ToolCallStream((text, final) => parseToolCalls(format, text, final), newCallId);
  // Each slot is filled once, at its first place (as the content template's {{delta}} is), whatever the values hold.
  const fill = (t: string, values: Record<string, string>) => {
    const at = Object.keys(values)
      .map((slot) => [t.indexOf(slot), slot] as const)
      .filter(([i]) => i >= 0)
      .sort((a, b) => a[0] - b[0]);
    let out = '';
    let from = 0;
    for (const [i, slot] of at) {
      out += t.slice(from, i) + values[slot]!;
      from = i + slot.length;
    }
    return out + t.slice(from);
  };
  const send = (d: ToolCallDelta | null, streamed: number, content: (text: string) => string): number => {
    if (!d) return 0;
    let n = 0;
    if (d.content) (emit(content(d.content)), n++);
    for (const c of d.calls) {
      const seq = String(firstSeq + streamed + n);
      emit(
        'id' in c
          ? fill(templates.start, { '{{index}}': String(c.index), '{{id}}': JSON.stringify(c.id), '{{name}}': JSON.stringify(c.name), '{{seq}}': seq })
          : fill(templates.arguments, { '{{index}}': String(c.index), '{{delta}}': JSON.stringify(c.arguments), '{{seq}}': seq }),
      );
      n++;
    }
    return n;
  };
  return {
    push: (text: string, streamed: number, content: (text: string) => string) => send(stream.push(text), streamed, content),
    end: (streamed: number, content: (text: string) => string) => send(stream.end(), streamed, content),
  };
}

function heldGeneration(inv: Invocation, h: number): HeldGeneration {
  const g = inv.generations.get(h);
  if (g) return g;
  throw inv.unstarted.get(h) ?? new AbiError('invalid-argument', `generation ${h} does not exist`);
}

/** Failed generations kept for their next/finish to report; one more fails the invocation. */
const MAX_UNSTARTED = 4096;

/**
 * Starts a host-run generation (inference.generate). The guest does not wait
 * for it: an expected failure (invalid arguments, a busy context or matcher,
 * no room) is kept under the generation's handle, and its first next or
 * finish returns it; anything else fails the invocation.
 */
function startGeneration(inv: Invocation, [h, gh, args, mh]: [number, number, WitGenerateArgs, number | null]): void {
  try {
    generate(inv, h, gh, args, mh);
  } catch (err) {
    if (!(err instanceof AbiError)) throw err;
    if (inv.unstarted.size >= MAX_UNSTARTED) throw new AbiError('limit-exceeded', `${MAX_UNSTARTED} generations could not start and were not dropped: ${err.message}`);
    inv.unstarted.set(gh, err);
  }
}

function toWitResult(r: GenerationResult, streamed: number): WitGenerationResult {
  if (r.finishReason === 'error') throw toAbiError(r.error) ?? new AbiError('internal', 'generation failed');
  return {
    text: r.text,
    tokens: Uint32Array.from(r.tokens),
    finishReason: r.finishReason,
    stopString: typeof r.stopReason === 'string' ? r.stopReason : undefined,
    stopToken: typeof r.stopReason === 'number' ? r.stopReason : undefined,
    promptTokens: r.promptTokens,
    completionTokens: r.completionTokens,
    cachedTokens: r.cachedTokens,
    logprobs: witLogprobs(r.logprobs),
    streamed,
  };
}

function generate(inv: Invocation, h: number, gh: number, args: WitGenerateArgs, mh: number | null): void {
  const { engine, ctx, family } = heldContext(inv, h);
  const constraint = mh === null ? undefined : heldMatcher(inv, mh);
  if (constraint && constraint.engine !== engine) throw new AbiError('invalid-argument', 'the matcher was made for another model than the context');
  if (constraint && generationUsing(inv, constraint.matcher)) throw new AbiError('busy', 'the matcher is constraining another generation');
  const V = engine.model.config.vocabSize;
  if (args.logprobs !== undefined && args.logprobs > 20) throw new AbiError('invalid-argument', `logprobs must be at most 20, got ${args.logprobs}`);
  const sampling = toSamplingParams(args.sampling, V, args.logprobs);
  const streamEvent = args.stream?.event;
  const format = streamData(args.stream?.template, args.stream?.firstSeq);
  const calls = args.stream?.toolCalls ? toolCallEvents(args.stream.toolCalls, engine.model.chatTemplate, args.stream.firstSeq, (text) => inv.emit(streamEvent!, text)) : null;
  const room = engine.roomFor(ctx);
  const wanted = Math.min(args.maxTokens ?? room, room, inv.tokensWithinPages(ctx, engine.pageSize));
  const reservation = inv.reserve(ctx, engine.pageSize, { tokens: wanted, upTo: true });
  const tokens = reservation.tokens;
  const held: HeldGeneration = { gen: null as never, chunks: [], waiter: null, firstTokenAt: 0, lastChunkAt: 0, streamed: 0, matcher: constraint?.matcher ?? null, end: null };
  const promptTokens = ctx.length;
  // The tail a tool-call stream held back goes out as the generation ends (or, at the latest, when the guest asks for the result).
  if (calls) {
    held.end = () => {
      held.end = null; // once
      held.streamed += calls.end(held.streamed, (text) => format(text, held.streamed));
    };
  }
  try {
    held.gen = engine.generate(ctx, {
      sampling,
      maxTokens: tokens,
      stop: args.stop,
      ...(constraint ? { grammar: constraint.matcher } : {}),
      // The model's end tokens are the engine's to know; the guest only adds its own.
      stopTokenIds: [...new Set([...(args.ignoreEos ? [] : engine.model.eosTokenIds), ...(args.stopTokenIds ?? [])])],
      ...(args.minTokens ? { minTokens: args.minTokens } : {}),
      includeStopString: args.includeStopString,
      skipSpecialTokens: !args.keepSpecialTokens,
      onChunk: (c) => {
        // Noted inside the engine step that produced them: metrics follow a long stream as it goes.
        if (c.tokens.length > 0) {
          const now = performance.now();
          if (held.firstTokenAt === 0) {
            held.firstTokenAt = now;
            inv.notePrompt(family, promptTokens);
          }
          inv.noteTokens(c.tokens.length, held.lastChunkAt ? now - held.lastChunkAt : null, now);
          held.lastChunkAt = now;
        }
        if (calls) held.streamed += calls.push(c.text, held.streamed, (text) => format(text, held.streamed));
        else if (streamEvent !== undefined && c.text !== '') inv.emit(streamEvent, format(c.text, held.streamed++));
        held.chunks.push(c);
        if (held.waiter) {
          held.waiter(held.chunks.splice(0));
          held.waiter = null;
        }
      },
    });
  } catch (err) {
    reservation.release();
    throw toAbiError(err);
  }
  inv.generations.set(gh, held);
  void held.gen.result.then((r) => {
    // What a tool-call stream held back goes out before the guest can learn the generation ended.
    held.end?.();
    reservation.release();
    inv.numTokens += r.completionTokens;
    // A prompt whose generation ended before its first token counts if it was read to the end (a cancelled one was not).
    if (r.finishReason === 'stop' || r.finishReason === 'length') inv.notePrompt(family, r.promptTokens);
    const timing = { queuedAt: held.gen.queuedAt, scheduledAt: held.gen.scheduledAt, firstTokenAt: held.firstTokenAt, lastTokenAt: held.lastChunkAt };
    inv.noteGeneration({ ...timing, completionTokens: r.completionTokens, finishReason: r.finishReason });
    held.waiter?.(null);
    held.waiter = null;
  });
}

export const inferenceHandlers: Handlers<OpsIn<'inference' | 'generation'>> = {
  'inference.forward': async (inv, [h, args]) => {
    const { engine, ctx } = heldContext(inv, h);
    // Everything is checked before the tokens are appended: a refused call changes nothing.
    // Rows count from the first token not yet computed as far as the guest knows (its pages may have been given back since).
    const pending = Math.max(1, ctx.numUnsettled + args.tokens.length);
    const rowOf = (o: WitOutputRequest) => o.row ?? pending - 1;
    for (const o of args.outputs) if (rowOf(o) >= pending) throw new AbiError('invalid-argument', `output row ${o.row} is past the ${pending} pending tokens`);
    if (args.attention && args.attention.length !== pending) {
      throw new AbiError('invalid-argument', `attention has ${args.attention.length} rows for ${pending} pending tokens`);
    }
    // The rows from the first asked for to the last come back whole: bound what one call may bring to the host.
    const V = engine.model.config.vocabSize;
    const span = args.outputs.length ? pending - Math.min(...args.outputs.map(rowOf)) : 0;
    if (span * V > MAX_FORWARD_FLOATS) {
      throw new AbiError('limit-exceeded', `outputs from row ${pending - span} to the last bring ${span} rows of ${V} logits to the host; one call may bring at most ${Math.floor(MAX_FORWARD_FLOATS / V)} rows (ask for rows nearer the end, or split the pass)`);
    }
    const compute = args.outputs.map((o) => prepareOutput(o, V));
    const numSampled = args.outputs.filter((o) => o.kind.tag === 'sample').length;
    const reservation = inv.reserve(ctx, engine.pageSize, { tokens: numSampled, newTokens: args.tokens.length });
    try {
      engine.append(ctx, Array.from(args.tokens), args.positions ? Array.from(args.positions) : undefined);
    } catch (err) {
      reservation.release();
      throw toAbiError(err);
    }
    try {
      const base = ctx.length - pending;
      const rows = args.attention?.map((runs, i) => runsToFlags(runs, base + i + 1));
      // Positions before `base` are recomputed only after a preemption; their own masks are gone, so causal.
      const attend = rows ? (pos: number, key: number) => (pos < base ? true : rows[pos - base]![key] === 1) : undefined;
      const firstRow = args.outputs.length ? Math.min(...args.outputs.map(rowOf)) : pending;
      const { logits } = await engine.forward(ctx, { numLogits: pending - firstRow, ...(attend ? { attend } : {}) });
      let history: TokenHistory | undefined;
      const getHistory = () => {
        if (!history) (history = new TokenHistory()).addPrompt(ctx.tokens);
        return history;
      };
      const outputs = args.outputs.map((o, i) => compute[i]!(logits[rowOf(o) - firstRow]!, getHistory));
      inv.numTokens += numSampled;
      inv.noteTokens(numSampled, null, performance.now());
      return outputs;
    } catch (err) {
      throw toAbiError(err);
    } finally {
      reservation.release();
    }
  },

  'inference.prompt-logprobs': async (inv, [h, top]) => {
    const { engine, ctx } = heldContext(inv, h);
    if (!Number.isInteger(top) || top > 20) throw new AbiError('invalid-argument', `top must be at most 20, got ${top}`);
    // The pending tokens take pages as a forward pass's would, and the computed token before them is computed again.
    const reservation = inv.reserve(ctx, engine.pageSize, { recompute: 1 });
    try {
      const scores = await engine.promptLogprobs(ctx, top);
      return scores.map((s) => s ?? undefined);
    } catch (err) {
      throw toAbiError(err);
    } finally {
      reservation.release();
    }
  },

  'inference.generate': startGeneration,

  'generation.next': (inv, [gh]) => {
    if (inv.unstarted.has(gh)) return null; // its finish says why
    const held = heldGeneration(inv, gh);
    if (held.chunks.length > 0) return held.chunks.splice(0).map(wit);
    if (held.gen.finished) return null;
    return new Promise((resolve) => (held.waiter = (chunks) => resolve(chunks && chunks.map(wit))));
  },

  'generation.finish': async (inv, [gh]) => {
    const held = heldGeneration(inv, gh);
    const result = await held.gen.result;
    held.end?.();
    return toWitResult(result, held.streamed);
  },

  'generation.cancel': (inv, [gh]) => inv.generations.get(gh)?.gen.cancel(),

  'generation.drop': (inv, [gh]) => {
    inv.unstarted.delete(gh);
    const held = inv.generations.get(gh);
    if (!held) return;
    held.gen.cancel();
    inv.generations.delete(gh);
  },
};
