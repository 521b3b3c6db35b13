// Block layouts of the quantized element types, bit-exact with GGUF / ggml (ggml-common.h).
// All multi-byte fields are little-endian; fp16 fields are raw IEEE binary16 bits.
#pragma once
#include <cstdint>

#include "kernels/types.h"

namespace coppice {

using half_bits = uint16_t;  // IEEE binary16 stored as bits (ggml_half)

// ---- Legacy 32-element blocks. Element j and j+16 share byte qs[j] (low / high nibble).
struct BlockQ4_0 {
  half_bits d;            // scale; x = d * (q - 8)
  uint8_t qs[QK4_0 / 2];  // 4-bit codes
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_1 {
  half_bits d;            // scale; x = d * q + m
  half_bits m;            // min
  uint8_t qs[QK4_1 / 2];  // 4-bit codes
};
static_assert(sizeof(BlockQ4_1) == 20);

struct BlockQ5_0 {
  half_bits d;            // scale; x = d * (q - 16)
  uint8_t qh[4];          // bit j = 5th bit of element j (uint32, little-endian)
  uint8_t qs[QK5_0 / 2];  // low 4 bits
};
static_assert(sizeof(BlockQ5_0) == 22);

struct BlockQ5_1 {
  half_bits d;            // scale; x = d * q + m
  half_bits m;            // min
  uint8_t qh[4];          // bit j = 5th bit of element j (uint32, little-endian)
  uint8_t qs[QK5_1 / 2];  // low 4 bits
};
static_assert(sizeof(BlockQ5_1) == 24);

struct BlockQ8_0 {
  half_bits d;        // scale; x = d * q
  int8_t qs[QK8_0];   // codes
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ8_1 {
  half_bits d;        // scale; x = d * q
  half_bits s;        // d * sum(qs), lets q4_1/q5_1 dots apply the min in one multiply
  int8_t qs[QK8_1];   // codes
};
static_assert(sizeof(BlockQ8_1) == 36);

// ---- K-quants: 256-element super-blocks split into sub-blocks of 16 or 32.

struct BlockQ2_K {
  uint8_t scales[QK_K / 16];  // per 16: low nibble scale, high nibble min (4 bits each)
  uint8_t qs[QK_K / 4];       // 2-bit codes, see quant_k.cpp for the interleave
  half_bits d;                // super-block scale of the scales
  half_bits dmin;             // super-block scale of the mins
};
static_assert(sizeof(BlockQ2_K) == 84);

struct BlockQ3_K {
  uint8_t hmask[QK_K / 8];  // high (3rd) bit: element i -> byte i % 32, bit i / 32
  uint8_t qs[QK_K / 4];     // low 2 bits
  uint8_t scales[12];       // 16 signed 6-bit scales (stored +32), packed
  half_bits d;              // super-block scale
};
static_assert(sizeof(BlockQ3_K) == 110);

constexpr int K_SCALE_SIZE = 12;  // bytes of the packed 6-bit scales/mins of q4_K, q5_K

struct BlockQ4_K {
  half_bits d;                    // super-block scale of the scales
  half_bits dmin;                 // super-block scale of the mins
  uint8_t scales[K_SCALE_SIZE];   // 8 x (6-bit scale, 6-bit min), packed
  uint8_t qs[QK_K / 2];           // 4-bit codes
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ5_K {
  half_bits d;                    // super-block scale of the scales
  half_bits dmin;                 // super-block scale of the mins
  uint8_t scales[K_SCALE_SIZE];   // 8 x (6-bit scale, 6-bit min), packed
  uint8_t qh[QK_K / 8];           // 5th bits
  uint8_t qs[QK_K / 2];           // low 4 bits
};
static_assert(sizeof(BlockQ5_K) == 176);

struct BlockQ6_K {
  uint8_t ql[QK_K / 2];      // low 4 bits
  uint8_t qh[QK_K / 4];      // high 2 bits
  int8_t scales[QK_K / 16];  // 8-bit signed sub-block scales
  half_bits d;               // super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

// Activation format for K-quant dots: float scale (not fp16) and per-16 sums of the codes.
struct BlockQ8_K {
  float d;                     // scale; x = d * q
  int8_t qs[QK_K];             // codes
  int16_t bsums[QK_K / 16];    // sum of each group of 16 codes
};
static_assert(sizeof(BlockQ8_K) == 292);

}  // namespace coppice
