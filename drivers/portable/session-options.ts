import type { InferenceSession } from 'onnxruntime-node';

/** ONNX Runtime session options: the driver's worker and benchmarks use the same. */
export function sessionOptions(threads = 0): InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Flush denormals to zero: softmax tails and tiny activations otherwise take
    // the slow path of x86 floating point (measured here: ~25% longer steps).
    extra: { session: { set_denormal_as_zero: '1' } },
  };
}
