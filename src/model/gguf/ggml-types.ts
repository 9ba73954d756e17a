/**
 * ggml's tensor types that this engine reads, with their block layouts (ggml's
 * `ggml-common.h`): values per block and bytes per block.
 *
 *   Q8_0  32 values: f16 d, int8 q[32]                     value = d·q
 *   Q4_0  32 values: f16 d, u8 qs[16]                      value = d·(q − 8); value j in the
 *                                                          low nibble of qs[j], j + 16 in its high one
 *   Q5_0  32 values: f16 d, u8 qh[4], u8 qs[16]              value = d·(q − 16), q of 5 bits: the
 *                                                          nibbles as Q4_0's, bit j of qh the fifth bit of value j
 *   Q5_1  32 values: f16 d, f16 m, u8 qh[4], u8 qs[16]       value = d·q + m (the same 5-bit q)
 *   Q4_K  256 values: f16 d, f16 dmin, u8 scales[12], u8 qs[128]: 8 sub-blocks of 32 with
 *         6-bit scales sc and mins m;                      value = d·sc·q − dmin·m
 *   Q6_K  256 values: u8 ql[128], u8 qh[64], int8 scales[16], f16 d: 16 sub-blocks of 16;
 *                                                          value = d·scale·(q − 32), q of 6 bits
 */

export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q4_K: 12, Q6_K: 14, BF16: 30 } as const;
export type GgmlType = (typeof GgmlType)[keyof typeof GgmlType];

export const GGML_TYPES: Record<GgmlType, { name: string; blockSize: number; blockBytes: number }> = {
  0: { name: 'F32', blockSize: 1, blockBytes: 4 },
  1: { name: 'F16', blockSize: 1, blockBytes: 2 },
  2: { name: 'Q4_0', blockSize: 32, blockBytes: 18 },
  6: { name: 'Q5_0', blockSize: 32, blockBytes: 22 },
  7: { name: 'Q5_1', blockSize: 32, blockBytes: 24 },
  8: { name: 'Q8_0', blockSize: 32, blockBytes: 34 },
  12: { name: 'Q4_K', blockSize: 256, blockBytes: 144 },
  14: { name: 'Q6_K', blockSize: 256, blockBytes: 210 },
  30: { name: 'BF16', blockSize: 1, blockBytes: 2 },
};

/** Every type ggml has defined, for naming the ones this engine does not read. */
const ALL_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K',
  16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16',
  34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

export function ggmlTypeName(type: number): string {
  return ALL_NAMES[type] ?? `type ${type}`;
}

export function isSupportedType(type: number): type is GgmlType {
  return type in GGML_TYPES;
}

export const SUPPORTED_TYPE_NAMES = Object.values(GGML_TYPES).map((t) => t.name);
