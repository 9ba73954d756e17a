import { describe, expect, it } from 'vitest';
import { StopMatcher } from './stop-matcher.ts';

describe('StopMatcher', () => {
  it('finds a stop string split across deltas and never emits it', () => {
    const m = new StopMatcher(['<END>']);
    expect(m.push('hello <E')).toBe('hello ');
    expect(m.push('N')).toBe('');
    expect(m.push('D> more')).toBe('');
    expect(m.stopped).toBe(true);
    expect(m.matched).toBe('<END>');
  });

  it('releases held-back text once it cannot start a stop string', () => {
    const m = new StopMatcher(['stop']);
    expect(m.push('a st')).toBe('a ');
    expect(m.push('ar')).toBe('star');
    expect(m.flush()).toBe('');
  });

  it('stops at the earliest of several stop strings', () => {
    const m = new StopMatcher(['bb', 'a']);
    expect(m.push('xxbbya')).toBe('xx');
    expect(m.matched).toBe('bb');
  });

  it('gives back held text at the end of the stream', () => {
    const m = new StopMatcher(['\n\n']);
    expect(m.push('line\n')).toBe('line');
    expect(m.flush()).toBe('\n');
  });

  it('keeps the stop string in the text when asked (include_stop_str_in_output)', () => {
    const m = new StopMatcher(['<END>'], true);
    expect(m.push('hello <E')).toBe('hello ');
    expect(m.push('ND> more')).toBe('<END>');
    expect(m.stopped).toBe(true);
  });

  it('lets text through unsearched when told not to match yet (min_tokens), then matches again', () => {
    const m = new StopMatcher(['ab']);
    expect(m.push('xab', false)).toBe('xab');
    expect(m.stopped).toBe(false);
    expect(m.push('ab')).toBe('');
    expect(m.stopped).toBe(true);
  });

  it('does not find, after the boundary, a stop string that ended before it (vLLM looks only at stops ending in new text)', () => {
    const m = new StopMatcher(['\n', '\n\n']);
    expect(m.push('x\n', false)).toBe('x');
    expect(m.push('y')).toBe('\ny');
    expect(m.stopped).toBe(false);
    expect(m.push('\n')).toBe('');
    expect(m.stopped).toBe(true);
  });

  it('finds a stop string that starts before the min_tokens boundary and ends after it', () => {
    const m = new StopMatcher(['ab']);
    expect(m.push('xa', false)).toBe('x');
    expect(m.push('b')).toBe('');
    expect(m.stopped).toBe(true);
  });
});
