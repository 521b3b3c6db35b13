// K-quant quantizers. Two steps per super-block, after ggml-quants.c (make_qkx2_quants,
// make_qx_quants, quantize_row_q*_K_ref), written independently here:
//  1. per sub-block, search candidate scales; for each, round to codes and refit the scale
//     (and min) by weighted least squares; keep the lowest weighted squared error;
//  2. quantize the sub-block scales against one fp16 super-block scale, then recompute the
//     codes with the scales actually stored, so dequantization sees consistent values.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/quant_impl.h"
#include "util/fp16.h"

namespace coppice::quant {
namespace {

constexpr float kGroupEps = 1e-15f;  // below this a group is treated as all zero (as ggml)

int clampi(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// Asymmetric fit: x ~ s * L - m with L in [0, nmax], s >= 0, m >= 0 (the min is never
// positive, so zero stays representable). Candidate inverse scales are
// (nmax + rmin + rdelta * k) / (max - min), k = 0..nstep. Returns s, writes m to *min_out.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L,
                    float* min_out, float rmin, float rdelta, int nstep) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) { lo = std::min(lo, x[i]); hi = std::max(hi, x[i]); }
  lo = std::min(lo, 0.0f);
  if (hi == lo) {  // constant block (<= 0): all codes 0, the min carries the value
    std::fill(L, L + n, uint8_t{0});
    *min_out = -lo;
    return 0.0f;
  }
  uint8_t trial[32];
  auto error_of = [&](const uint8_t* q, float s, float m) {
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double diff = static_cast<double>(s) * q[i] + m - x[i];
      err += w[i] * diff * diff;
    }
    return err;
  };
  auto assign = [&](uint8_t* q, float iscale, float m) {
    for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(
        clampi(nearest_int(iscale * (x[i] - m)), 0, nmax));
  };
  // Weighted least squares for (s, m) given codes q; m is clamped to <= 0.
  auto refit = [&](const uint8_t* q, float* s, float* m) {
    double sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
      sw += w[i]; sl += w[i] * q[i]; sl2 += w[i] * q[i] * q[i];
      sx += w[i] * x[i]; slx += w[i] * q[i] * x[i];
    }
    const double det = sw * sl2 - sl * sl;
    if (det <= 0) return false;
    double ss = (sw * slx - sx * sl) / det, mm = (sl2 * sx - sl * slx) / det;
    if (mm > 0) { mm = 0; ss = slx / sl2; }
    if (!(ss > 0)) return false;
    *s = static_cast<float>(ss);
    *m = static_cast<float>(mm);
    return true;
  };

  // Start from plain range scaling, then try the candidates.
  float best_s = (hi - lo) / static_cast<float>(nmax), best_m = lo;
  assign(L, 1.0f / best_s, best_m);
  double best_err = error_of(L, best_s, best_m);
  for (int k = 0; k <= nstep; ++k) {
    const float iscale = (static_cast<float>(nmax) + rmin + rdelta * static_cast<float>(k)) / (hi - lo);
    assign(trial, iscale, lo);
    float s, m;
    if (!refit(trial, &s, &m)) continue;
    const double err = error_of(trial, s, m);
    if (err < best_err) {
      best_err = err; best_s = s; best_m = m;
      std::memcpy(L, trial, static_cast<size_t>(n));
    }
  }
  // Alternate: nearest codes for the fitted (s, m), refit; each step cannot increase the error.
  for (int it = 0; it < 3; ++it) {
    assign(trial, 1.0f / best_s, best_m);
    float s, m;
    if (!refit(trial, &s, &m)) break;
    const double err = error_of(trial, s, m);
    if (!(err < best_err)) break;
    best_err = err; best_s = s; best_m = m;
    std::memcpy(L, trial, static_cast<size_t>(n));
  }
  *min_out = -best_m;
  return best_s;
}

// Symmetric fit: x ~ s * L with L in [-nmax, nmax - 1]. The value of largest magnitude goes to
// the -nmax end (the longer side), so s takes the opposite sign of that value. Weights w.
float fit_scale_sym(int n, int nmax, const float* x, const float* w, int8_t* L) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); max = x[i]; }
  }
  if (amax < kGroupEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  int8_t trial[16];
  // Best scale for given codes is sum(w x l) / sum(w l^2); the error drop is slx^2 / sl2.
  auto gain = [&](const int8_t* q, double* slx_out, double* sl2_out) {
    double slx = 0, sl2 = 0;
    for (int i = 0; i < n; ++i) { slx += w[i] * x[i] * q[i]; sl2 += w[i] * q[i] * q[i]; }
    *slx_out = slx; *sl2_out = sl2;
    return sl2 > 0 ? slx * slx / sl2 : -1.0;
  };
  auto assign = [&](int8_t* q, float iscale) {
    for (int i = 0; i < n; ++i) q[i] = static_cast<int8_t>(
        clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
  };
  double best = -1, slx = 0, sl2 = 0, best_scale = 0;
  for (int k = -9; k <= 9; ++k) {
    assign(trial, -(static_cast<float>(nmax) + 0.1f * static_cast<float>(k)) / max);
    const double g = gain(trial, &slx, &sl2);
    if (g > best) {
      best = g; best_scale = slx / sl2;
      std::memcpy(L, trial, static_cast<size_t>(n));
    }
  }
  for (int it = 0; it < 3 && best_scale != 0; ++it) {
    assign(trial, static_cast<float>(1.0 / best_scale));
    const double g = gain(trial, &slx, &sl2);
    if (!(g > best)) break;
    best = g; best_scale = slx / sl2;
    std::memcpy(L, trial, static_cast<size_t>(n));
  }
  return static_cast<float>(best_scale);
}

// Packs sub-block j's 6-bit scale and min into the 12-byte q4_K / q5_K layout
// (inverse of get_scale_min_k4). `s` must be zeroed first.
void put_scale_min_k4(int j, int sc, int m, uint8_t* s) {
  if (j < 4) {
    s[j] = static_cast<uint8_t>(s[j] | sc);
    s[j + 4] = static_cast<uint8_t>(s[j + 4] | m);
  } else {
    s[j + 4] = static_cast<uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
    s[j - 4] = static_cast<uint8_t>(s[j - 4] | ((sc >> 4) << 6));
    s[j] = static_cast<uint8_t>(s[j] | ((m >> 4) << 6));
  }
}

// Quantizes non-negative per-sub-block values v[0..n) to integers 0..qmax against one fp16
// super-block scale; returns the scale's fp16 bits.
half_bits quantize_scales_unsigned(const float* v, int n, int qmax, int* out) {
  float vmax = 0;
  for (int j = 0; j < n; ++j) vmax = std::max(vmax, v[j]);
  if (!(vmax > 0)) {
    std::fill(out, out + n, 0);
    return fp32_to_fp16(0.0f);
  }
  const float inv = static_cast<float>(qmax) / vmax;
  for (int j = 0; j < n; ++j) out[j] = clampi(nearest_int(inv * v[j]), 0, qmax);
  return fp32_to_fp16(vmax / static_cast<float>(qmax));
}

// Shared q4_K / q5_K: 8 sub-blocks of 32 with 6-bit scales and mins. Writes codes to L.
void quantize_k4_scales(const float* x, int nmax, float rmin, int nstep, half_bits* d,
                        half_bits* dmin, uint8_t* scales, uint8_t* L) {
  float sc[8], mn[8], w[32];
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = av + std::fabs(xs[l]);  // ggml's q4_K weighting
    sc[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mn[j], rmin, 0.1f, nstep);
  }
  int isc[8], imn[8];
  *d = quantize_scales_unsigned(sc, 8, 63, isc);
  *dmin = quantize_scales_unsigned(mn, 8, 63, imn);
  std::memset(scales, 0, K_SCALE_SIZE);
  for (int j = 0; j < 8; ++j) put_scale_min_k4(j, isc[j], imn[j], scales);
  const float df = fp16_to_fp32(*d), dmf = fp16_to_fp32(*dmin);
  for (int j = 0; j < 8; ++j) {
    const float dl = df * static_cast<float>(isc[j]);
    if (dl == 0.0f) continue;  // keep the step-1 codes; they dequantize to -min anyway
    const float ml = dmf * static_cast<float>(imn[j]);
    for (int l = 0; l < 32; ++l) {
      L[32 * j + l] = static_cast<uint8_t>(clampi(nearest_int((x[32 * j + l] + ml) / dl), 0, nmax));
    }
  }
}

}  // namespace

void from_float_q2_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ2_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K) {
    uint8_t L[QK_K];
    float sc[16], mn[16], w[16];
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) w[l] = std::fabs(src[16 * j + l]);
      sc[j] = fit_scale_min(16, 3, src + 16 * j, w, L + 16 * j, &mn[j], -0.5f, 0.1f, 15);
    }
    int isc[16], imn[16];
    b[i].d = quantize_scales_unsigned(sc, 16, 15, isc);
    b[i].dmin = quantize_scales_unsigned(mn, 16, 15, imn);
    const float df = fp16_to_fp32(b[i].d), dmf = fp16_to_fp32(b[i].dmin);
    for (int j = 0; j < 16; ++j) {
      b[i].scales[j] = static_cast<uint8_t>(isc[j] | (imn[j] << 4));
      const float dl = df * static_cast<float>(isc[j]);
      if (dl == 0.0f) continue;
      const float ml = dmf * static_cast<float>(imn[j]);
      for (int l = 0; l < 16; ++l) {
        L[16 * j + l] = static_cast<uint8_t>(clampi(nearest_int((src[16 * j + l] + ml) / dl), 0, 3));
      }
    }
    // Element e: byte 32*(e/128) + e%32, bit offset 2*((e%128)/32) (see quant_k.cpp q2_bits).
    std::memset(b[i].qs, 0, sizeof b[i].qs);
    for (int e = 0; e < QK_K; ++e) {
      b[i].qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>(L[e] << (2 * ((e % 128) / 32)));
    }
  }
}

void from_float_q3_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ3_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K) {
    int8_t L[QK_K];
    float sc[16], w[16];
    float max_sc = 0, amax_sc = 0;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) w[l] = src[16 * j + l] * src[16 * j + l];
      sc[j] = fit_scale_sym(16, 4, src + 16 * j, w, L + 16 * j);
      if (std::fabs(sc[j]) > amax_sc) { amax_sc = std::fabs(sc[j]); max_sc = sc[j]; }
    }
    std::memset(b[i].scales, 0, sizeof b[i].scales);
    if (amax_sc == 0.0f) {
      b[i].d = fp32_to_fp16(0.0f);
      std::fill(L, L + QK_K, int8_t{0});
    } else {
      // Scales are signed 6-bit (-32..31); the largest goes to -32, the longer side.
      const float iscale = -32.0f / max_sc;
      for (int j = 0; j < 16; ++j) {
        const int l = clampi(nearest_int(iscale * sc[j]), -32, 31) + 32;
        if (j < 8) b[i].scales[j] = static_cast<uint8_t>(l & 0xF);
        else b[i].scales[j - 8] = static_cast<uint8_t>(b[i].scales[j - 8] | ((l & 0xF) << 4));
        b[i].scales[8 + j % 4] = static_cast<uint8_t>(b[i].scales[8 + j % 4] | ((l >> 4) << (2 * (j / 4))));
      }
      b[i].d = fp32_to_fp16(1.0f / iscale);
      const float df = fp16_to_fp32(b[i].d);
      for (int j = 0; j < 16; ++j) {
        const float dl = df * static_cast<float>(q3k_scale(b[i].scales, j));
        for (int l = 0; l < 16; ++l) {
          L[16 * j + l] = dl == 0.0f ? int8_t{0} : static_cast<int8_t>(
              clampi(nearest_int(src[16 * j + l] / dl), -4, 3));
        }
      }
    }
    // Stored code = L + 4: low 2 bits as in q2_K, bit 2 in hmask[e % 32] bit e / 32.
    std::memset(b[i].qs, 0, sizeof b[i].qs);
    std::memset(b[i].hmask, 0, sizeof b[i].hmask);
    for (int e = 0; e < QK_K; ++e) {
      const int q = L[e] + 4;
      b[i].qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>((q & 3) << (2 * ((e % 128) / 32)));
      b[i].hmask[e % 32] |= static_cast<uint8_t>((q >> 2) << (e / 32));
    }
  }
}

void from_float_q4_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ4_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K) {
    uint8_t L[QK_K];
    quantize_k4_scales(src, 15, -1.0f, 20, &b[i].d, &b[i].dmin, b[i].scales, L);
    // Each 64-element chunk: elements 0-31 in low nibbles, 32-63 in high nibbles of 32 bytes.
    for (int c = 0; c < QK_K / 64; ++c) {
      for (int l = 0; l < 32; ++l) {
        b[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
      }
    }
  }
}

void from_float_q5_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ5_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K) {
    uint8_t L[QK_K];
    quantize_k4_scales(src, 31, -0.5f, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    for (int c = 0; c < QK_K / 64; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
        b[i].qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
      }
    }
    for (int e = 0; e < QK_K; ++e) {
      b[i].qh[e % 32] |= static_cast<uint8_t>((L[e] >> 4) << (e / 32));
    }
  }
}

void from_float_q6_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ6_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K) {
    int8_t L[QK_K];
    float sc[16], w[16];
    float max_sc = 0, amax_sc = 0;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) w[l] = src[16 * j + l] * src[16 * j + l];
      sc[j] = fit_scale_sym(16, 32, src + 16 * j, w, L + 16 * j);
      if (std::fabs(sc[j]) > amax_sc) { amax_sc = std::fabs(sc[j]); max_sc = sc[j]; }
    }
    if (amax_sc == 0.0f) {
      b[i].d = fp32_to_fp16(0.0f);
      std::fill(b[i].scales, b[i].scales + 16, int8_t{0});
      std::fill(L, L + QK_K, int8_t{0});
    } else {
      const float iscale = -128.0f / max_sc;
      for (int j = 0; j < 16; ++j) {
        b[i].scales[j] = static_cast<int8_t>(clampi(nearest_int(iscale * sc[j]), -128, 127));
      }
      b[i].d = fp32_to_fp16(1.0f / iscale);
      const float df = fp16_to_fp32(b[i].d);
      for (int j = 0; j < 16; ++j) {
        const float dl = df * static_cast<float>(b[i].scales[j]);
        for (int l = 0; l < 16; ++l) {
          L[16 * j + l] = dl == 0.0f ? int8_t{0} : static_cast<int8_t>(
              clampi(nearest_int(src[16 * j + l] / dl), -32, 31));
        }
      }
    }
    // Stored code = L + 32: quarter g of each 128-half -> ql nibble (g >> 1) of byte
    // 64*half + 32*(g & 1) + l, and 2 bits at offset 2g of qh[32*half + l].
    std::memset(b[i].ql, 0, sizeof b[i].ql);
    std::memset(b[i].qh, 0, sizeof b[i].qh);
    for (int e = 0; e < QK_K; ++e) {
      const int q = L[e] + 32, half = e / 128, g = (e % 128) / 32, l = e % 32;
      b[i].ql[64 * half + 32 * (g & 1) + l] |= static_cast<uint8_t>((q & 0xF) << (4 * (g >> 1)));
      b[i].qh[32 * half + l] |= static_cast<uint8_t>((q >> 4) << (2 * g));
    }
  }
}

// q8_K activations: d = -max/127 with the signed extreme at -127; bsums for the K-quant mins.
void from_float_q8_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K) {
    float amax = 0, max = 0;
    for (int e = 0; e < QK_K; ++e) {
      if (std::fabs(src[e]) > amax) { amax = std::fabs(src[e]); max = src[e]; }
    }
    if (amax == 0.0f) {
      b[i].d = 0.0f;
      std::memset(b[i].qs, 0, sizeof b[i].qs);
      std::memset(b[i].bsums, 0, sizeof b[i].bsums);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int e = 0; e < QK_K; ++e) {
      b[i].qs[e] = static_cast<int8_t>(std::min(127, nearest_int(iscale * src[e])));
    }
    for (int j = 0; j < QK_K / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b[i].qs[16 * j + l];
      b[i].bsums[j] = static_cast<int16_t>(sum);
    }
    b[i].d = 1.0f / iscale;
  }
}

}  // namespace coppice::quant
