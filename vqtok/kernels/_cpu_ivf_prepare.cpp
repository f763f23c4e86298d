// Per-query preparation of an IVF-PQ search on the CPU: the probe (nearest coarse centroids) and the PQ
// inner-product lookup tables, in distance form, for a range of queries [q0, q1) per calling thread.
//
//   probe:  d(q, c) = max(0, ||q||^2 + ||c||^2 - 2 <q, c>) (L2) or -<q, c> (inner product); the P smallest by
//           (d, centroid) -> lists[q] and qterm[q] (without centroids: lists 0, qterm ||q||^2 (L2) or 0);
//   tables: qlut[q][m][j] = -2 <q_m, C_m[j]> (L2) or -<q_m, C_m[j]>, from codebooks (M, K, dsub) transposed here to
//           (M, dsub, K) so that the innermost loop runs over the K entries of a table (contiguous, vectorized).
// This replaces a dozen small torch operations per query batch, so several threads each run one call; the centroid
// norms and the transposed codebooks are recomputed per call (small) so that the caller runs no torch operation.
// Written for vqtok; no code was copied from other implementations.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "_topk_heap.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace {

// <x, y> over D floats in 16 lanes (the compiler vectorizes the lanes; one accumulator would be a serial chain).
inline float dot(const float* x, const float* y, int D) {
  constexpr int L = 16;
  float lanes[L] = {0.f};
  int j = 0;
  for (; j + L <= D; j += L)
    for (int t = 0; t < L; ++t) lanes[t] += x[j + t] * y[j + t];
  for (int t = 0; j + t < D; ++t) lanes[t] += x[j + t] * y[j + t];
  float acc = 0.f;
  for (int t = 0; t < L; ++t) acc += lanes[t];
  return acc;
}

constexpr int QB = 4;  // queries per pass over the centroids (each centroid row is read once per QB queries)

// out[b] = <xs[b], y> for QB queries: each load of y serves QB queries (two 8-float FMA chains per query).
inline void dot4(const float* const* xs, const float* y, int D, float* out) {
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc[QB][2];
  for (int b = 0; b < QB; ++b) acc[b][0] = acc[b][1] = _mm256_setzero_ps();
  int j = 0;
  for (; j + 16 <= D; j += 16) {
    const __m256 y0 = _mm256_loadu_ps(y + j), y1 = _mm256_loadu_ps(y + j + 8);
    for (int b = 0; b < QB; ++b) {
      acc[b][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xs[b] + j), y0, acc[b][0]);
      acc[b][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xs[b] + j + 8), y1, acc[b][1]);
    }
  }
  for (int b = 0; b < QB; ++b) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(acc[b][0], acc[b][1]));
    float t = 0.f;
    for (int i = 0; i < 8; ++i) t += lanes[i];
    for (int i = j; i < D; ++i) t += xs[b][i] * y[i];
    out[b] = t;
  }
#else
  for (int b = 0; b < QB; ++b) out[b] = dot(xs[b], y, D);
#endif
}

}  // namespace

extern "C" {

// queries (Q, D); coarse (L, D) or null; codebooks (M, K, dsub) with M * dsub = D.
// Outputs for rows [q0, q1): lists / qterm (Q, P), qlut (Q, M, K). Returns 0, or 1 on bad arguments.
int vqtok_ivf_prepare(const float* queries, int64_t q0, int64_t q1, int D, const float* coarse, int64_t L, int P,
                      int ip, const float* codebooks, int M, int K, int64_t* lists, float* qterm, float* qlut) {
  if (D < 1 || M < 1 || K < 1 || D % M || P < 1 || (coarse && P > L)) return 1;
  const int dsub = D / M;
  std::vector<float> cnorm(coarse ? L : 0), cbt((int64_t)M * K * dsub);
  for (int64_t c = 0; c < (int64_t)cnorm.size(); ++c) cnorm[c] = dot(coarse + c * D, coarse + c * D, D);
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < K; ++j)
      for (int e = 0; e < dsub; ++e) cbt[((int64_t)m * dsub + e) * K + j] = codebooks[((int64_t)m * K + j) * dsub + e];
  const float* cbT = cbt.data();
  // Probe, QB queries at a time (a missing query repeats the first; its results are dropped).
  for (int64_t g = q0; g < q1; g += QB) {
    const int nb = (int)std::min<int64_t>(QB, q1 - g);
    const float* xs[QB];
    float qn[QB];
    for (int b = 0; b < QB; ++b) {
      xs[b] = queries + (g + (b < nb ? b : 0)) * D;
      qn[b] = ip ? 0.f : dot(xs[b], xs[b], D);
    }
    if (!coarse) {
      for (int b = 0; b < nb; ++b) {
        lists[(g + b) * P] = 0;
        qterm[(g + b) * P] = qn[b];
      }
      continue;
    }
    vqtok_heap::Heap h[QB];
    for (int b = 0; b < QB; ++b) h[b] = vqtok_heap::Heap{qterm + (g + b) * P, lists + (g + b) * P, P};
    float s[QB];
    for (int64_t c = 0; c < L; ++c) {
      dot4(xs, coarse + c * D, D, s);
      for (int b = 0; b < nb; ++b) {
        float d = ip ? -s[b] : qn[b] + cnorm[c] - 2.f * s[b];
        d = d > 0.f || ip ? d : 0.f;
        vqtok_heap::offer(h[b], d, c);
      }
    }
    for (int b = 0; b < nb; ++b) h[b].finish();
  }
  for (int64_t q = q0; q < q1; ++q) {
    const float* x = queries + q * D;
    float* lut = qlut + q * (int64_t)M * K;
    const float scale = ip ? -1.f : -2.f;
    for (int m = 0; m < M; ++m) {
      float* t = lut + m * K;
      for (int j = 0; j < K; ++j) t[j] = 0.f;
      for (int e = 0; e < dsub; ++e) {
        const float xv = x[m * dsub + e];
        const float* row = cbT + ((int64_t)m * dsub + e) * K;
        for (int j = 0; j < K; ++j) t[j] += xv * row[j];
      }
      for (int j = 0; j < K; ++j) t[j] *= scale;
    }
  }
  return 0;
}

}  // extern "C"
