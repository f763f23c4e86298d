// Inverted-file ADC scan on the CPU: lookup-table sums over packed codes with a running top-k heap.
//
// For every query q (a row range per calling thread) and each of its P probed lists l:
//   lut[m][j]  = qlut[q][m][j] (+ llut[l][m][j] when per-list tables are given)          (M x K floats)
//   d(row)     = qterm[q][p] + sum_m lut[m][code(row, m)] (+ norms[row])   for row in offsets[l]..offsets[l+1]
// and keeps the k smallest (d, row) pairs in a max-heap ordered by (d, row), so exact ties keep the lowest
// rows. Output: (Q, k) distances ascending (ties by row) and rows; -1 / +inf when fewer than k were seen.
//
// Codes are the bit stream of vqtok.vectors.packing (index m at bits m*nbits .. m*nbits+nbits-1, little-endian):
// 8-bit codes are one byte per index, 4-bit codes two per byte (low nibble first), other widths go through a
// generic bit reader. The 8-bit path sums four rows at a time so that four independent gather-add chains are in
// flight (the loads, not the adds, bound this loop).
// Written for vqtok; no code was copied from other implementations.

#include <cstdint>
#include <cstring>
#include <limits>

#include "_topk_heap.h"

namespace {

using vqtok_heap::Heap;
using vqtok_heap::offer;

void scan8(const float* lut, int M, const uint8_t* codes, int64_t n, int64_t row0, const float* norms, float bias,
           Heap& h) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint8_t* c = codes + i * M;
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
    for (int m = 0; m < M; ++m) {
      const float* t = lut + m * 256;
      a0 += t[c[m]];
      a1 += t[c[M + m]];
      a2 += t[c[2 * M + m]];
      a3 += t[c[3 * M + m]];
    }
    float a[4] = {a0, a1, a2, a3};
    for (int j = 0; j < 4; ++j) {
      float v = bias + a[j];
      if (norms) v += norms[i + j];
      offer(h, v, row0 + i + j);
    }
  }
  for (; i < n; ++i) {
    const uint8_t* c = codes + i * M;
    float a = 0.f;
    for (int m = 0; m < M; ++m) a += lut[m * 256 + c[m]];
    float v = bias + a;
    if (norms) v += norms[i];
    offer(h, v, row0 + i);
  }
}

void scan4(const float* lut, int M, int cs, const uint8_t* codes, int64_t n, int64_t row0, const float* norms,
           float bias, Heap& h) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* c = codes + i * cs;
    float a = 0.f;
    int m = 0;
    for (; m + 2 <= M; m += 2) {
      uint8_t b = c[m >> 1];
      a += lut[m * 16 + (b & 15)];
      a += lut[(m + 1) * 16 + (b >> 4)];
    }
    if (m < M) a += lut[m * 16 + (c[m >> 1] & 15)];
    float v = bias + a;
    if (norms) v += norms[i];
    offer(h, v, row0 + i);
  }
}

void scan_bits(const float* lut, int M, int nbits, int cs, const uint8_t* codes, int64_t n, int64_t row0,
               const float* norms, float bias, Heap& h) {
  const int K = 1 << nbits;
  const uint32_t mask = (uint32_t)K - 1;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* c = codes + i * cs;
    float a = 0.f;
    for (int m = 0; m < M; ++m) {
      int64_t bit = (int64_t)m * nbits;
      // At most 16 bits starting anywhere in a byte span 3 bytes; read only the bytes inside the code.
      uint32_t w = 0;
      int64_t byte = bit >> 3;
      for (int b = 0; b < 3 && byte + b < cs; ++b) w |= (uint32_t)c[byte + b] << (8 * b);
      a += lut[m * K + ((w >> (bit & 7)) & mask)];
    }
    float v = bias + a;
    if (norms) v += norms[i];
    offer(h, v, row0 + i);
  }
}

// Squared L2 (or negated inner product) between x and one stored vector: float32 v, or SQ8 bytes c decoded on
// the fly as offset + c * scale (no float copy of the candidate). L lanes of partial sums so that the compiler
// vectorizes the loop (a single float accumulator is a serial chain it may not reorder).
template <bool kSq8, bool kIp>
inline float lane_term(const float* x, const float* v, const uint8_t* c, const float* scale, const float* offset,
                       int j) {
  const float y = kSq8 ? offset[j] + c[j] * scale[j] : v[j];
  return kIp ? -x[j] * y : (x[j] - y) * (x[j] - y);
}

template <bool kSq8, bool kIp>
float row_distance(const float* x, const float* v, const uint8_t* c, const float* scale, const float* offset, int D) {
  constexpr int L = 16;
  float lanes[L] = {0.f};
  int j = 0;
  for (; j + L <= D; j += L)
    for (int t = 0; t < L; ++t) lanes[t] += lane_term<kSq8, kIp>(x, v, c, scale, offset, j + t);
  for (int t = 0; j + t < D; ++t) lanes[t] += lane_term<kSq8, kIp>(x, v, c, scale, offset, j + t);
  float acc = 0.f;
  for (int t = 0; t < L; ++t) acc += lanes[t];
  return acc;
}

}  // namespace

extern "C" {

// Returns 0 on success, 1 on bad arguments. Rows [q0, q1) of the query-indexed arrays are processed;
// scratch holds M * 2^nbits floats.
int vqtok_ivf_adc_scan(const float* qlut, const float* llut, const float* qterm, const int64_t* lists, int64_t q0,
                       int64_t q1, int P, const uint8_t* codes, int cs, const float* norms, const int64_t* offsets,
                       int64_t nlist, int M, int nbits, int k, float* scratch, float* out_d, int64_t* out_r) {
  if (M < 1 || nbits < 1 || nbits > 16 || k < 1 || P < 1) return 1;
  const int K = 1 << nbits;
  const int64_t table = (int64_t)M * K;
  for (int64_t q = q0; q < q1; ++q) {
    Heap h{out_d + q * k, out_r + q * k, k};
    const float* ql = qlut + q * table;
    for (int p = 0; p < P; ++p) {
      int64_t l = lists[q * P + p];
      if (l < 0 || l >= nlist) continue;  // faiss marks missing probes with -1
      int64_t s = offsets[l], e = offsets[l + 1];
      if (e <= s) continue;
      const float* lut = ql;
      if (llut) {
        const float* ll = llut + l * table;
        for (int64_t j = 0; j < table; ++j) scratch[j] = ql[j] + ll[j];
        lut = scratch;
      }
      float bias = qterm[q * P + p];
      const float* nr = norms ? norms + s : nullptr;
      const uint8_t* c = codes + s * cs;
      if (nbits == 8 && cs == M)
        scan8(lut, M, c, e - s, s, nr, bias, h);
      else if (nbits == 4)
        scan4(lut, M, cs, c, e - s, s, nr, bias, h);
      else
        scan_bits(lut, M, nbits, cs, c, e - s, s, nr, bias, h);
    }
    h.finish();
  }
  return 0;
}

// Re-scores candidate rows (Q, C) (-1: none) against their stored vectors, float32 (flat) or SQ8 bytes decoded as
// offset[j] + code * scale[j]; keeps the k best per query. Distance: squared L2, or the negated inner product when
// ip != 0. Rows [q0, q1). Returns 0, or 1 on bad arguments.
int vqtok_rerank(const float* queries, int64_t q0, int64_t q1, int D, const int64_t* rows, int C, const float* flat,
                 const uint8_t* sq8, const float* scale, const float* offset, int ip, int k, float* out_d,
                 int64_t* out_r) {
  if (D < 1 || C < 1 || k < 1 || (flat == nullptr) == (sq8 == nullptr)) return 1;
  for (int64_t q = q0; q < q1; ++q) {
    const float* x = queries + q * D;
    Heap h{out_d + q * k, out_r + q * k, k};
    for (int c = 0; c < C; ++c) {
      const int64_t row = rows[q * C + c];
      if (row < 0) continue;
      const float* v = flat ? flat + row * D : nullptr;
      const uint8_t* c8 = sq8 ? sq8 + row * D : nullptr;
      const float acc = flat ? (ip ? row_distance<false, true>(x, v, c8, scale, offset, D)
                                   : row_distance<false, false>(x, v, c8, scale, offset, D))
                             : (ip ? row_distance<true, true>(x, v, c8, scale, offset, D)
                                   : row_distance<true, false>(x, v, c8, scale, offset, D));
      offer(h, acc, row);
    }
    h.finish();
  }
  return 0;
}

}  // extern "C"
