import type { InferenceSession } from 'onnxruntime-node';

/**
 * ONNX Runtime session options: the driver's worker and benchmarks use the same.
 * `spinWait`: let ONNX Runtime's threads spin between runs (its default). Off,
 * they leave the cores to the gateway and the inferlet workers between steps;
 * measured on 2 cores: less CPU per token and less added latency through the
 * gateway, the same decode speed at batch 32, but ~20% slower steps at batch 8
 * with the engine alone. So it stays on unless configured.
 */
export function sessionOptions(threads = 0, spinWait = true): InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Flush denormals to zero: softmax tails and tiny activations otherwise take
    // the slow path of x86 floating point (measured here: ~25% longer steps).
    extra: { session: { set_denormal_as_zero: '1', 'intra_op.allow_spinning': spinWait ? '1' : '0' } },
  };
}
