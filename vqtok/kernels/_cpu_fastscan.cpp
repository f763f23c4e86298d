// 4-bit PQ "fast scan" over inverted lists: uint8 lookup tables, 16-bit accumulation, exact re-ranking.
//
// faiss's design (pq4_fast_scan*.cpp, simd_result_handlers.h) re-implemented:
//   * layout: the codes of each list are stored once, transposed into blocks of 32 rows (vqtok_fastscan_pack):
//     byte j of the 32 rows is contiguous, so one 32-byte load holds sub-spaces 2j (low nibbles) and 2j + 1 (high
//     nibbles) of 32 rows; the last block of a list is padded with zero codes (never reported);
//   * tables: per (query, probe) the float table lut[m][j] = qlut[q][m][j] (+ llut[l][m][j]) is quantized to uint8
//     with one scale a = 255 / max_m (max_j lut[m][j] - min_j lut[m][j]) and per-m offsets, so that
//     d ~= base + (sum_m q8[m][code_m]) / a with base = qterm + sum_m min_m; the sum fits in 16 bits (M <= 256);
//   * scan: vpshufb (a 16-entry byte table per 128-bit lane) looks up 32 rows at once; the byte results are added as
//     16-bit words, which sums the even rows in the low bytes and, shifted right by 8, the odd rows separately, so
//     no widening is needed (even = acc - (odd << 8) modulo 2^16 is exact because the true sums are < 2^16);
//   * selection: a per-query heap of the best `cand` (approximate distance, row) pairs; once it is full, an integer
//     bound derived from its worst entry is compared with the 32 sums in one SIMD compare, and only the rows whose
//     bit is set are tested exactly; probes are visited in rank order (nearest list first), so the bound is tight
//     early;
//   * the `cand` candidates of each query are re-scored with the float tables from their row-major codes and the k
//     best returned, so the distances are exact ADC distances; a true top-k row is missed only when `cand` rows
//     beat it under the quantized tables (error per table entry <= 0.5 / a).
// Without AVX2, or compiled with -DVQTOK_FASTSCAN_SCALAR, the same integer sums and masks are computed one row at
// a time, so both paths return identical results.
// Written for vqtok; no code was copied from other implementations.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "_topk_heap.h"

#if defined(__AVX2__) && !defined(VQTOK_FASTSCAN_SCALAR)
#define VQTOK_FS_SIMD 1
#include <immintrin.h>
#endif

namespace {

constexpr int BS = 32;  // rows per block

// Per-row sums of one block and the rows whose sum is <= bound (bit i: row i).
// q8 holds 2 * cs tables of 16 bytes (the table of a missing odd sub-space is zero).
uint32_t block_scan(const uint8_t* blk, const uint8_t* q8, int cs, uint32_t bound, uint16_t* sums) {
#ifdef VQTOK_FS_SIMD
  __m256i acc = _mm256_setzero_si256(), odd = _mm256_setzero_si256();
  const __m256i low = _mm256_set1_epi8(0x0f);
  for (int j = 0; j < cs; ++j) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + j * BS));
    const __m256i t0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q8 + 32 * j)));
    const __m256i t1 =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q8 + 32 * j + 16)));
    const __m256i v0 = _mm256_shuffle_epi8(t0, _mm256_and_si256(bytes, low));
    const __m256i v1 = _mm256_shuffle_epi8(t1, _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low));
    acc = _mm256_add_epi16(acc, _mm256_add_epi16(v0, v1));  // can wrap; corrected below
    odd = _mm256_add_epi16(odd, _mm256_add_epi16(_mm256_srli_epi16(v0, 8), _mm256_srli_epi16(v1, 8)));
  }
  const __m256i even = _mm256_sub_epi16(acc, _mm256_slli_epi16(odd, 8));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums), even);       // rows 0, 2, ..., 30
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + 16), odd);   // rows 1, 3, ..., 31
  if (bound >= 0xffff) return 0xffffffffu;
  const __m256i b = _mm256_set1_epi16((short)bound);
  const uint32_t me = _mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_min_epu16(even, b), even));
  const uint32_t mo = _mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_min_epu16(odd, b), odd));
  return (me & 0x55555555u) | ((mo & 0x55555555u) << 1);
#else
  uint32_t s[BS] = {0};
  for (int j = 0; j < cs; ++j) {
    const uint8_t* c = blk + j * BS;
    const uint8_t* t0 = q8 + 32 * j;
    const uint8_t* t1 = t0 + 16;
    for (int i = 0; i < BS; ++i) s[i] += t0[c[i] & 15] + t1[c[i] >> 4];
  }
  uint32_t mask = 0;
  for (int i = 0; i < BS; ++i) {
    sums[(i & 1) * 16 + (i >> 1)] = (uint16_t)s[i];
    if (s[i] <= bound) mask |= 1u << i;
  }
  return mask;
#endif
}

// Quantizes lut = ql (+ ll) into q8 (2 * cs tables of 16, padding zero); returns the scale a, sets base += sum min.
float quantize(const float* ql, const float* ll, int M, int cs, float* lut, uint8_t* q8, float& base) {
  alignas(32) float mins[256];
  float range = 0.f;
#ifdef VQTOK_FS_SIMD
  for (int m = 0; m < M; ++m) {
    __m256 t0 = _mm256_loadu_ps(ql + m * 16), t1 = _mm256_loadu_ps(ql + m * 16 + 8);
    if (ll) {
      t0 = _mm256_add_ps(t0, _mm256_loadu_ps(ll + m * 16));
      t1 = _mm256_add_ps(t1, _mm256_loadu_ps(ll + m * 16 + 8));
    }
    _mm256_storeu_ps(lut + m * 16, t0);
    _mm256_storeu_ps(lut + m * 16 + 8, t1);
    __m256 lo = _mm256_min_ps(t0, t1), hi = _mm256_max_ps(t0, t1);
    __m128 l4 = _mm_min_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
    __m128 h4 = _mm_max_ps(_mm256_castps256_ps128(hi), _mm256_extractf128_ps(hi, 1));
    l4 = _mm_min_ps(l4, _mm_movehl_ps(l4, l4));
    h4 = _mm_max_ps(h4, _mm_movehl_ps(h4, h4));
    l4 = _mm_min_ss(l4, _mm_shuffle_ps(l4, l4, 1));
    h4 = _mm_max_ss(h4, _mm_shuffle_ps(h4, h4, 1));
    mins[m] = _mm_cvtss_f32(l4);
    base += mins[m];
    range = std::max(range, _mm_cvtss_f32(h4) - mins[m]);
  }
#else
  for (int m = 0; m < M; ++m) {
    float* t = lut + m * 16;
    for (int j = 0; j < 16; ++j) t[j] = ll ? ql[m * 16 + j] + ll[m * 16 + j] : ql[m * 16 + j];
    float lo = t[0], hi = t[0];
    for (int j = 1; j < 16; ++j) {
      lo = std::min(lo, t[j]);
      hi = std::max(hi, t[j]);
    }
    mins[m] = lo;
    base += lo;
    range = std::max(range, hi - lo);
  }
#endif
  const float a = range > 0.f ? 255.f / range : 1.f;
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < 16; ++j) {
      // Round half up (values are >= 0): a form the compiler vectorizes, unlike nearbyint.
      const float v = (lut[m * 16 + j] - mins[m]) * a + 0.5f;
      q8[m * 16 + j] = (uint8_t)(int)std::min(255.f, std::max(0.f, v));
    }
  std::memset(q8 + M * 16, 0, (2 * cs - M) * 16);
  return a;
}

// An approximate candidate: distance, row and the probe that found it (re-scoring needs the probe's list).
struct Cand {
  float v;
  int32_t p;
  int64_t row;
};

// (a) ranks after (b): larger distance, or equal distance and larger row (rows are unique).
inline bool after(const Cand& a, const Cand& b) { return a.v > b.v || (a.v == b.v && a.row > b.row); }

// Bounded max-heap keeping the `keep` smallest candidates by (v, row).
struct TopHeap {
  Cand* h;
  int keep;
  int n = 0;

  float worst() const { return n == keep ? h[0].v : std::numeric_limits<float>::infinity(); }

  void offer(const Cand& c) {
    if (n < keep) {
      int i = n++;
      for (int par; i > 0 && after(c, h[par = (i - 1) / 2]); i = par) h[i] = h[par];
      h[i] = c;
      return;
    }
    if (!after(h[0], c)) return;
    int i = 0;
    for (;;) {
      int ch = 2 * i + 1;
      if (ch >= n) break;
      if (ch + 1 < n && after(h[ch + 1], h[ch])) ++ch;
      if (!after(h[ch], c)) break;
      h[i] = h[ch];
      i = ch;
    }
    h[i] = c;
  }
};

// Integer bound on the sums whose distance base + sum / a can still be below worst (all of them when infinite).
uint32_t sum_bound(float worst, float base, float a) {
  if (!(worst < std::numeric_limits<float>::infinity())) return 0xffffu;
  const double t = std::floor(((double)worst - base) * a) + 1.0;  // +1: margin for float rounding
  return t < 0.0 ? 0u : (t >= 65535.0 ? 0xffffu : (uint32_t)t);
}

}  // namespace

extern "C" {

// Transposes row-major codes (N, cs), rows grouped by list (CSR offsets), into blocks of 32 rows per list.
// block_start[l] (nlist + 1 entries, filled) counts blocks; out holds block_start[nlist] * 32 * cs bytes.
// Pass out = nullptr to fill block_start only. Returns 0, or 1 on bad arguments.
int vqtok_fastscan_pack(const uint8_t* codes, int cs, const int64_t* offsets, int64_t nlist, int64_t* block_start,
                        uint8_t* out) {
  if (cs < 1 || nlist < 1) return 1;
  block_start[0] = 0;
  for (int64_t l = 0; l < nlist; ++l) {
    const int64_t n = offsets[l + 1] - offsets[l];
    if (n < 0) return 1;
    block_start[l + 1] = block_start[l] + (n + BS - 1) / BS;
  }
  if (out == nullptr) return 0;
  std::memset(out, 0, block_start[nlist] * BS * cs);
  for (int64_t l = 0; l < nlist; ++l) {
    uint8_t* dst = out + block_start[l] * BS * cs;
    for (int64_t i = 0, n = offsets[l + 1] - offsets[l]; i < n; ++i) {
      const uint8_t* c = codes + (offsets[l] + i) * cs;
      uint8_t* b = dst + (i / BS) * cs * BS + (i % BS);
      for (int j = 0; j < cs; ++j) b[j * BS] = c[j];
    }
  }
  return 0;
}

// Returns 0 on success, 1 on bad arguments. qlut (Q, M, 16), llut (L, M, 16) or null, qterm (Q, P), lists (Q, P)
// as vqtok_ivf_adc_scan; codes (N, cs) row-major (re-scoring), blocks / block_start from vqtok_fastscan_pack.
// Queries [q0, q1); `cand` >= k approximate candidates per query are re-ranked exactly.
int vqtok_ivf_fastscan(const float* qlut, const float* llut, const float* qterm, const int64_t* lists, int64_t q0,
                       int64_t q1, int P, const uint8_t* codes, const uint8_t* blocks, const int64_t* block_start,
                       int cs, const int64_t* offsets, int64_t nlist, int M, int k, int cand, float* out_d,
                       int64_t* out_r) {
  if (M < 1 || M > 256 || cs != (M + 1) / 2 || k < 1 || cand < k || P < 1) return 1;
  const int table = M * 16;
  // Queries one at a time, their probes in rank order: the nearest lists come first, so the admission bound is
  // tight early and few rows reach the heap.
  std::vector<Cand> store(cand);
  std::vector<float> lut(table);
  std::vector<uint8_t> q8(2 * cs * 16);
  alignas(32) uint16_t sums[BS];
  for (int64_t q = q0; q < q1; ++q) {
    TopHeap r{store.data(), cand};
    const float* ql = qlut + q * table;
    for (int p = 0; p < P; ++p) {
      const int64_t l = lists[q * P + p];
      if (l < 0 || l >= nlist) continue;  // faiss marks missing probes with -1
      const int64_t s = offsets[l], n = offsets[l + 1] - s;
      if (n <= 0) continue;
      const uint8_t* lb = blocks + block_start[l] * BS * cs;
      float base = qterm[q * P + p];
      const float a = quantize(ql, llut ? llut + l * table : nullptr, M, cs, lut.data(), q8.data(), base);
      const float inv = 1.f / a;
      float seen = r.worst();
      uint32_t bound = sum_bound(seen, base, a);
      for (int64_t b = 0; b * BS < n; ++b) {
        uint32_t mask = block_scan(lb + b * BS * cs, q8.data(), cs, bound, sums);
        if (n - b * BS < BS) mask &= (1u << (n - b * BS)) - 1;  // padding rows
        while (mask) {
          const int i = __builtin_ctz(mask);
          mask &= mask - 1;
          r.offer(Cand{base + sums[(i & 1) * 16 + (i >> 1)] * inv, p, s + b * BS + i});
        }
        if (r.worst() != seen) bound = sum_bound(seen = r.worst(), base, a);
      }
    }
    // Exact re-scoring of the candidates with the float tables.
    vqtok_heap::Heap out{out_d + q * k, out_r + q * k, k};
    for (int c = 0; c < r.n; ++c) {
      const int64_t row = r.h[c].row, p = r.h[c].p, l = lists[q * P + p];
      const uint8_t* code = codes + row * cs;
      const float* ll = llut ? llut + l * table : nullptr;
      float acc0 = 0.f, acc1 = 0.f;  // two chains: the loads, not the adds, bound this loop
      for (int j = 0; j < M / 2; ++j) {
        const int c0 = code[j] & 15, c1 = code[j] >> 4;
        acc0 += ql[(2 * j) * 16 + c0] + (ll ? ll[(2 * j) * 16 + c0] : 0.f);
        acc1 += ql[(2 * j + 1) * 16 + c1] + (ll ? ll[(2 * j + 1) * 16 + c1] : 0.f);
      }
      if (M & 1) {
        const int c0 = code[M / 2] & 15;
        acc0 += ql[(M - 1) * 16 + c0] + (ll ? ll[(M - 1) * 16 + c0] : 0.f);
      }
      vqtok_heap::offer(out, qterm[q * P + p] + (acc0 + acc1), row);
    }
    out.finish();
  }
  return 0;
}

}  // extern "C"
