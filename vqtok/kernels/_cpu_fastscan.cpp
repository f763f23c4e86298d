// 4-bit PQ "fast scan" over inverted lists: uint8 lookup tables, 16-bit accumulation, exact re-ranking.
//
// Codes are the plain bit stream of vqtok.vectors.packing (two 4-bit indices per byte, low nibble first; M indices
// in cs = ceil(M / 2) bytes), row-major, rows grouped by list (CSR offsets). Per calling thread (a query range):
//   1. the (query, probe) pairs are grouped by list, so each list is visited once;
//   2. the list's codes are transposed once into blocks of 32 rows (byte j of 32 rows contiguous), so that one
//      32-byte load holds index m of 32 rows for every pair that probes the list;
//   3. per pair, the float table lut[m][j] = qlut[q][m][j] (+ llut[l][m][j]) is quantized to uint8 with one scale
//      a = 255 / max_m (max_j lut[m][j] - min_j lut[m][j]) and per-m offsets min_m, so that
//      d ~= qterm + sum_m min_m + (sum_m q8[m][code_m]) / a, and the sum fits in 16 bits (M <= 256);
//      the sums of 32 rows are computed with byte shuffles (vpshufb: a 16-entry table lookup per byte lane) and
//      16-bit adds, and the approximate distances feed a per-query top-`cand` heap;
//   4. the `cand` candidates of each query are re-scored exactly with the float tables and the best k returned.
// So returned distances are exact ADC distances; only the candidate selection uses the quantized tables (a row
// can be missed when its quantized distance ranks below `cand` others; error per table entry <= 0.5 / a).
// Without AVX2 the same quantized sums are computed one row at a time (same results).
// Written for vqtok; no code was copied from other implementations.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "_topk_heap.h"

#ifdef __AVX2__
#include <immintrin.h>
#endif

namespace {

constexpr int BS = 32;  // rows per block

// Pushes (v, row) into the max-heap of capacity k in caller storage that holds n pairs (kept per query across
// the lists it probes, hence the count outside the heap).
inline void heap_push(float* d, int64_t* r, int k, int& n, float v, int64_t row) {
  vqtok_heap::Heap h{d, r, k, n};
  vqtok_heap::offer(h, v, row);
  n = h.n;
}

// Sums of the quantized tables over one block of 32 rows: out[i] = sum_m q8[m][code(i, m)].
void block_sums(const uint8_t* blk, const uint8_t* q8, int M, uint16_t* out) {
#ifdef __AVX2__
  __m256i acc_lo = _mm256_setzero_si256(), acc_hi = _mm256_setzero_si256();
  const __m256i low = _mm256_set1_epi8(0x0f);
  for (int m = 0; m < M; m += 2) {
    __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + (m >> 1) * BS));
    __m128i t0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q8 + m * 16));
    __m256i lut0 = _mm256_broadcastsi128_si256(t0);
    __m256i v = _mm256_shuffle_epi8(lut0, _mm256_and_si256(bytes, low));
    if (m + 1 < M) {
      __m128i t1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q8 + (m + 1) * 16));
      __m256i lut1 = _mm256_broadcastsi128_si256(t1);
      __m256i w = _mm256_shuffle_epi8(lut1, _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low));
      // Two 8-bit values can reach 510: widen before adding.
      acc_lo = _mm256_add_epi16(acc_lo, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(w)));
      acc_hi = _mm256_add_epi16(acc_hi, _mm256_cvtepu8_epi16(_mm256_extracti128_si256(w, 1)));
    }
    acc_lo = _mm256_add_epi16(acc_lo, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(v)));
    acc_hi = _mm256_add_epi16(acc_hi, _mm256_cvtepu8_epi16(_mm256_extracti128_si256(v, 1)));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), acc_lo);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16), acc_hi);
#else
  for (int i = 0; i < BS; ++i) out[i] = 0;
  for (int m = 0; m < M; ++m) {
    const uint8_t* b = blk + (m >> 1) * BS;
    const uint8_t* t = q8 + m * 16;
    for (int i = 0; i < BS; ++i) out[i] += t[(m & 1) ? (b[i] >> 4) : (b[i] & 15)];
  }
#endif
}

}  // namespace

extern "C" {

// Returns 0 on success, 1 on bad arguments. Inputs as vqtok_ivf_adc_scan (nbits = 4, no norms); `cand` >= k
// approximate candidates per query are re-ranked exactly.
int vqtok_ivf_fastscan(const float* qlut, const float* llut, const float* qterm, const int64_t* lists, int64_t q0,
                       int64_t q1, int P, const uint8_t* codes, int cs, const int64_t* offsets, int64_t nlist, int M,
                       int k, int cand, float* out_d, int64_t* out_r) {
  if (M < 1 || M > 256 || cs != (M + 1) / 2 || k < 1 || cand < k || P < 1) return 1;
  const int64_t nq = q1 - q0;
  const int table = M * 16;
  // Pairs grouped by list (counting sort).
  std::vector<int64_t> start(nlist + 1, 0);
  for (int64_t q = q0; q < q1; ++q)
    for (int p = 0; p < P; ++p) {
      int64_t l = lists[q * P + p];
      if (l >= 0 && l < nlist) ++start[l + 1];
    }
  for (int64_t l = 0; l < nlist; ++l) start[l + 1] += start[l];
  std::vector<int64_t> pairs(start[nlist]);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t q = q0; q < q1; ++q)
      for (int p = 0; p < P; ++p) {
        int64_t l = lists[q * P + p];
        if (l >= 0 && l < nlist) pairs[fill[l]++] = q * P + p;
      }
  }
  std::vector<float> hd(nq * cand);
  std::vector<int64_t> hr(nq * cand);
  std::vector<int> hn(nq, 0);
  std::vector<uint8_t> blocks;
  std::vector<float> lut(table);
  std::vector<uint8_t> q8(table);
  uint16_t sums[BS];
  for (int64_t l = 0; l < nlist; ++l) {
    if (start[l] == start[l + 1]) continue;
    const int64_t s = offsets[l], n = offsets[l + 1] - s;
    if (n <= 0) continue;
    const int64_t nb = (n + BS - 1) / BS;
    blocks.assign(nb * cs * BS, 0);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* c = codes + (s + i) * cs;
      uint8_t* b = blocks.data() + (i / BS) * cs * BS + (i % BS);
      for (int j = 0; j < cs; ++j) b[j * BS] = c[j];
    }
    for (int64_t e = start[l]; e < start[l + 1]; ++e) {
      const int64_t q = pairs[e] / P;
      const float* ql = qlut + q * table;
      const float* ll = llut ? llut + l * table : nullptr;
      float base = qterm[pairs[e]], range = 0.f;
      std::vector<float> mins(M);
      for (int m = 0; m < M; ++m) {
        float lo = std::numeric_limits<float>::infinity(), hi = -lo;
        for (int j = 0; j < 16; ++j) {
          float v = ql[m * 16 + j] + (ll ? ll[m * 16 + j] : 0.f);
          lut[m * 16 + j] = v;
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
        mins[m] = lo;
        base += lo;
        range = std::max(range, hi - lo);
      }
      const float a = range > 0.f ? 255.f / range : 1.f;
      // Round half up (values are >= 0): a form the compiler vectorizes, unlike nearbyint.
      for (int m = 0; m < M; ++m)
        for (int j = 0; j < 16; ++j) {
          float v = (lut[m * 16 + j] - mins[m]) * a + 0.5f;
          q8[m * 16 + j] = (uint8_t)(int)std::min(255.f, std::max(0.f, v));
        }
      const float inv = 1.f / a;
      float* d = hd.data() + (q - q0) * cand;
      int64_t* r = hr.data() + (q - q0) * cand;
      int& hnq = hn[q - q0];
      for (int64_t b = 0; b < nb; ++b) {
        block_sums(blocks.data() + b * cs * BS, q8.data(), M, sums);
        const int64_t rows = std::min<int64_t>(BS, n - b * BS);
        // Once the heap is full, an integer pre-test skips the rows whose quantized sum cannot beat its worst
        // entry (one compare per row instead of a float conversion and a heap test); rows at the bound still
        // go through the exact (distance, row) test.
        int64_t bound = std::numeric_limits<int64_t>::max();
        if (hnq == cand) {
          const double t = std::ceil(((double)d[0] - base) * a) + 1.0;  // +1: margin for float rounding
          bound = t > 1e6 ? (int64_t)1e6 : (t < -1.0 ? -1 : (int64_t)t);
        }
        for (int i = 0; i < rows; ++i)
          if (sums[i] <= bound) heap_push(d, r, cand, hnq, base + sums[i] * inv, s + b * BS + i);
      }
    }
  }
  // Exact re-ranking of the candidates.
  for (int64_t q = q0; q < q1; ++q) {
    const float* ql = qlut + q * table;
    float* od = out_d + q * k;
    int64_t* orow = out_r + q * k;
    int n = 0;
    const int64_t* r = hr.data() + (q - q0) * cand;
    for (int c = 0; c < hn[q - q0]; ++c) {
      const int64_t row = r[c];
      const int64_t l = std::upper_bound(offsets, offsets + nlist + 1, row) - offsets - 1;
      float bias = 0.f;
      for (int p = 0; p < P; ++p)
        if (lists[q * P + p] == l) {
          bias = qterm[q * P + p];
          break;
        }
      const uint8_t* code = codes + row * cs;
      const float* ll = llut ? llut + l * table : nullptr;
      float acc = 0.f;
      for (int m = 0; m < M; ++m) {
        int j = (m & 1) ? (code[m >> 1] >> 4) : (code[m >> 1] & 15);
        acc += ql[m * 16 + j] + (ll ? ll[m * 16 + j] : 0.f);
      }
      heap_push(od, orow, k, n, bias + acc, row);
    }
    // Heap sort ascending, then pad.
    std::vector<std::pair<float, int64_t>> kept(n);
    for (int i = 0; i < n; ++i) kept[i] = {od[i], orow[i]};
    std::sort(kept.begin(), kept.end());
    for (int i = 0; i < k; ++i) {
      od[i] = i < n ? kept[i].first : std::numeric_limits<float>::infinity();
      orow[i] = i < n ? kept[i].second : -1;
    }
  }
  return 0;
}

}  // extern "C"
