// Fused exact nearest-code search on the CPU: distance GEMM and running argmin in registers.
//
// For every latent x (row of an (n, d) fp32 matrix) it finds argmin_k ||c_k||^2 - 2 <x, c_k> over the
// codebook (K, d) and returns that value and the index (lowest index on exact ties). Nothing of size
// n x K is ever written: a block of R latents is scored against V x 16 codes at a time in vector
// registers, and only the per-lane best value and index survive.
//
// Loop nest (per calling thread, over its own rows):
//   for each code tile of `ktile` codes (transposed into a (d, ktile) scratch so that one vector load
//   gives one coordinate of 16 codes, and small enough to stay in L2):
//     for each block of R latents (pre-scaled by -2, which is exact):
//       for each step of V groups of 16 codes: acc[v][r] = |c|^2 + sum_j (-2 x[r][j]) * c[v][j]   (FMA)
//                                              keep acc[v][r] where strictly smaller than best[r], v in order
//       fold the 16 lanes into the block's running (value, index) pair.
// Strict "<" everywhere keeps the earliest code on ties: within a lane codes come in increasing order,
// lanes are folded by (value, index), and tiles are visited in increasing order.
// Block shapes (measured, 1 thread, AVX-512): R=8, V=1 for d=8, where the compare-and-select work per
// FMA is highest; R=7, V=2 otherwise, which needs fewer loads per FMA (2 code vectors + 7 broadcasts
// for 14 FMAs) and keeps 14 accumulators + 14 running-best registers within the 32 zmm registers:
// +5-20% over R=8, V=1 for d >= 16.
//
// Written with GCC vector extensions rather than intrinsics so that one source compiles for whatever
// `-march=native` offers (one zmm register with AVX-512, two ymm with AVX2, four xmm with SSE).
// Written for vqtok; no code was copied from other implementations.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace {

constexpr int W = 16;     // codes per vector
constexpr int MAX_R = 8;  // largest latent block used below (sizes the scratch)
typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(W * sizeof(int32_t))));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// One block of R latents `xs` (R x d, already multiplied by -2) against one transposed code tile
// `ct` (d x kt, kt a multiple of W, padding codes have bias +inf). `base` is the index of the tile's
// first code. Updates the R running (best, arg) pairs.
template <int R, int DC, int V>
inline void score_block(const float* xs, int d_runtime, const float* ct, const float* bias, int kt, int32_t base,
                        float* best, int32_t* arg) {
  const int d = DC > 0 ? DC : d_runtime;
  const vf inf = vf{} + std::numeric_limits<float>::infinity();
  vi lane;
  for (int l = 0; l < W; ++l) lane[l] = l;
  vf bv[R];
  vi bi[R];
  for (int r = 0; r < R; ++r) {
    bv[r] = inf;
    bi[r] = vi{};
  }
  int k = 0;
  for (; k + V * W <= kt; k += V * W) {
    vf acc[V][R];
    for (int v = 0; v < V; ++v) {
      const vf b = load(bias + k + v * W);
      for (int r = 0; r < R; ++r) acc[v][r] = b;
    }
#pragma GCC unroll 8
    for (int j = 0; j < d; ++j) {
      vf c[V];
      for (int v = 0; v < V; ++v) c[v] = load(ct + static_cast<int64_t>(j) * kt + k + v * W);
      for (int r = 0; r < R; ++r) {
        const float xv = xs[r * d + j];
        for (int v = 0; v < V; ++v) acc[v][r] += xv * c[v];
      }
    }
    for (int v = 0; v < V; ++v) {
      const vi idx = lane + (base + k + v * W);
      for (int r = 0; r < R; ++r) {
        const vi better = acc[v][r] < bv[r];
        bv[r] = better ? acc[v][r] : bv[r];
        bi[r] = better ? idx : bi[r];
      }
    }
  }
  // A tile whose size is not a multiple of V x 16 ends with single 16-code groups.
  for (; k < kt; k += W) {
    const vf b = load(bias + k);
    vf acc[R];
    for (int r = 0; r < R; ++r) acc[r] = b;
    for (int j = 0; j < d; ++j) {
      const vf c = load(ct + static_cast<int64_t>(j) * kt + k);
      for (int r = 0; r < R; ++r) acc[r] += xs[r * d + j] * c;
    }
    const vi idx = lane + (base + k);
    for (int r = 0; r < R; ++r) {
      const vi better = acc[r] < bv[r];
      bv[r] = better ? acc[r] : bv[r];
      bi[r] = better ? idx : bi[r];
    }
  }
  for (int r = 0; r < R; ++r) {
    float v = bv[r][0];
    int32_t a = bi[r][0];
    for (int l = 1; l < W; ++l) {
      const float lv = bv[r][l];
      const int32_t la = bi[r][l];
      if (lv < v || (lv == v && la < a)) {
        v = lv;
        a = la;
      }
    }
    // Earlier tiles hold lower indices: only a strictly better value replaces them.
    if (v < best[r]) {
      best[r] = v;
      arg[r] = a;
    }
  }
}

// Copies codes [k0, k0 + kk) transposed into ct (d, kt) and their bias into bias (kt), kt = kk rounded up to W;
// padding codes are zero with an infinite bias, so they never win. Returns kt.
inline int load_tile(const float* c, const float* cn, int d, int64_t k0, int kk, float* ct, float* bias) {
  const int kt = (kk + W - 1) / W * W;
  for (int j = 0; j < d; ++j) {
    float* row = ct + static_cast<int64_t>(j) * kt;
    for (int q = 0; q < kk; ++q) row[q] = c[(k0 + q) * d + j];
    for (int q = kk; q < kt; ++q) row[q] = 0.0f;
  }
  for (int q = 0; q < kk; ++q) bias[q] = cn[k0 + q];
  for (int q = kk; q < kt; ++q) bias[q] = std::numeric_limits<float>::infinity();
  return kt;
}

// Writes latents [r0, r0 + m) scaled by -2 (exact) into the block xs (R, d); rows past the end of a ragged
// block are scored as zeros and dropped.
template <int R>
inline void load_block(const float* x, int64_t r0, int m, int d, float* xs) {
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < d; ++j) xs[r * d + j] = r < m ? -2.0f * x[(r0 + r) * d + j] : 0.0f;
}

// The loop nest shared by both searches: fills the n_out outputs with (+inf, 0), then for each code tile
// (transposed once) calls block(kt, k0, r0, m) for each block of R latents loaded into xs.
template <int R, class Block>
inline void walk_blocks(const float* x, int64_t n, int d, const float* c, const float* cn, int64_t num_codes,
                        int ktile, float* ct, float* bias, float* xs, float* out_d, int64_t* out_i, int64_t n_out,
                        Block&& block) {
  for (int64_t i = 0; i < n_out; ++i) {
    out_d[i] = std::numeric_limits<float>::infinity();
    out_i[i] = 0;
  }
  for (int64_t k0 = 0; k0 < num_codes; k0 += ktile) {
    const int kk = static_cast<int>(num_codes - k0 < ktile ? num_codes - k0 : ktile);
    const int kt = load_tile(c, cn, d, k0, kk, ct, bias);
    for (int64_t r0 = 0; r0 < n; r0 += R) {
      const int m = static_cast<int>(n - r0 < R ? n - r0 : R);
      load_block<R>(x, r0, m, d, xs);
      block(kt, k0, r0, m);
    }
  }
}

template <int R, int DC, int V>
void search_rows(const float* x, int64_t n, int d, const float* c, const float* cn, int64_t num_codes, int ktile,
                 float* ct, float* bias, float* xs, float* out_d, int64_t* out_i) {
  walk_blocks<R>(x, n, d, c, cn, num_codes, ktile, ct, bias, xs, out_d, out_i, n,
                 [&](int kt, int64_t k0, int64_t r0, int m) {
                   float best[R];
                   int32_t arg[R];
                   for (int r = 0; r < R; ++r) {
                     best[r] = r < m ? out_d[r0 + r] : std::numeric_limits<float>::infinity();
                     arg[r] = r < m ? static_cast<int32_t>(out_i[r0 + r]) : 0;
                   }
                   score_block<R, DC, V>(xs, d, ct, bias, kt, static_cast<int32_t>(k0), best, arg);
                   for (int r = 0; r < m; ++r) {
                     out_d[r0 + r] = best[r];
                     out_i[r0 + r] = arg[r];
                   }
                 });
}

// ------------------------------------------------------------------------------------------- top-k
// The same loop nest with V = 1, keeping the k best (value, index) pairs of each latent in a sorted list
// (its output row). Codes arrive in increasing index order (tiles, 16-code groups and lanes in order), so
// a candidate enters only if strictly below the k-th value, and is inserted after the entries it ties:
// the list stays ordered by (value, index), lowest index first on ties, which is also why tie-heavy data
// costs nothing extra. One vector compare against the row's k-th value rejects most 16-code groups.

// Inserts (v, a) into the sorted list (bd, bi) of k entries, given v < bd[k - 1].
inline void insert_sorted(float* bd, int64_t* bi, int k, float v, int64_t a) {
  int p = k - 1;
  while (p > 0 && bd[p - 1] > v) {
    bd[p] = bd[p - 1];
    bi[p] = bi[p - 1];
    --p;
  }
  bd[p] = v;
  bi[p] = a;
}

template <int R, int DC>
inline void topk_block(const float* xs, int d_runtime, const float* ct, const float* bias, int kt, int64_t base, int m,
                       int k, float* bd, int64_t* bi) {
  const int d = DC > 0 ? DC : d_runtime;
  float thr[R];
  // Rows past the end of a ragged block get -inf: nothing is below it, so they never insert.
  for (int r = 0; r < R; ++r) thr[r] = r < m ? bd[r * k + k - 1] : -std::numeric_limits<float>::infinity();
  for (int j0 = 0; j0 < kt; j0 += W) {
    const vf b = load(bias + j0);
    vf acc[R];
    for (int r = 0; r < R; ++r) acc[r] = b;
#pragma GCC unroll 8
    for (int j = 0; j < d; ++j) {
      const vf c = load(ct + static_cast<int64_t>(j) * kt + j0);
      for (int r = 0; r < R; ++r) acc[r] += xs[r * d + j] * c;
    }
    for (int r = 0; r < R; ++r) {
      const vi hit = acc[r] < (vf{} + thr[r]);
      int any = 0;
      for (int l = 0; l < W; ++l) any |= hit[l];
      if (!any) continue;
      float* row_d = bd + static_cast<int64_t>(r) * k;
      int64_t* row_i = bi + static_cast<int64_t>(r) * k;
      for (int l = 0; l < W; ++l) {
        const float v = acc[r][l];
        if (v < thr[r]) {
          insert_sorted(row_d, row_i, k, v, base + j0 + l);
          thr[r] = row_d[k - 1];
        }
      }
    }
  }
}

template <int R, int DC>
void topk_rows(const float* x, int64_t n, int d, const float* c, const float* cn, int64_t num_codes, int ktile, int k,
               float* ct, float* bias, float* xs, float* out_d, int64_t* out_i) {
  walk_blocks<R>(x, n, d, c, cn, num_codes, ktile, ct, bias, xs, out_d, out_i, n * k,
                 [&](int kt, int64_t k0, int64_t r0, int m) {
                   topk_block<R, DC>(xs, d, ct, bias, kt, k0, m, k, out_d + r0 * k, out_i + r0 * k);
                 });
}

// Carves the caller's scratch (vqtok_nearest_scratch floats) into the transposed tile (ktile, d), its bias
// (ktile) and the latent block (MAX_R, d); ktile is already a multiple of W.
inline void split_scratch(float* scratch, int ktile, int d, float*& ct, float*& bias, float*& xs) {
  ct = scratch;
  bias = ct + static_cast<int64_t>(ktile) * d;
  xs = bias + ktile;
}

}  // namespace

extern "C" {

// Scratch floats the caller must provide to vqtok_nearest_f32: transposed tile, bias and the latent block.
int64_t vqtok_nearest_scratch(int d, int ktile) {
  const int64_t kt = (static_cast<int64_t>(ktile) + W - 1) / W * W;
  return kt * d + kt + MAX_R * static_cast<int64_t>(d);
}

// x: (n, d) fp32 row-major; c: (num_codes, d) fp32 row-major; cn: (num_codes,) bias (|c|^2 for L2,
// zeros for inner products); ktile: codes per tile (rounded up to 16 internally); scratch: at least
// vqtok_nearest_scratch(d, ktile) floats. Writes out_d (n,) and out_i (n,). Returns 0 on success.
int vqtok_nearest_f32(const float* x, int64_t n, int d, const float* c, const float* cn, int64_t num_codes,
                      int ktile, float* scratch, float* out_d, int64_t* out_i) {
  if (n < 0 || d < 1 || num_codes < 1 || ktile < 1 || num_codes > std::numeric_limits<int32_t>::max()) return 1;
  ktile = (ktile + W - 1) / W * W;
  float *ct, *bias, *xs;
  split_scratch(scratch, ktile, d, ct, bias, xs);
  switch (d) {
    case 8:
      search_rows<8, 8, 1>(x, n, d, c, cn, num_codes, ktile, ct, bias, xs, out_d, out_i);
      break;
    case 16:
      search_rows<7, 16, 2>(x, n, d, c, cn, num_codes, ktile, ct, bias, xs, out_d, out_i);
      break;
    case 32:
      search_rows<7, 32, 2>(x, n, d, c, cn, num_codes, ktile, ct, bias, xs, out_d, out_i);
      break;
    default:
      search_rows<7, 0, 2>(x, n, d, c, cn, num_codes, ktile, ct, bias, xs, out_d, out_i);
  }
  return 0;
}

// Like vqtok_nearest_f32 for the k nearest codes (1 <= k <= num_codes): writes out_d (n, k) and out_i (n, k),
// each row sorted by (value, index). Same scratch size as vqtok_nearest_f32. Returns 0 on success.
int vqtok_topk_f32(const float* x, int64_t n, int d, const float* c, const float* cn, int64_t num_codes, int ktile,
                   int k, float* scratch, float* out_d, int64_t* out_i) {
  if (n < 0 || d < 1 || num_codes < 1 || ktile < 1 || k < 1 || k > num_codes) return 1;
  ktile = (ktile + W - 1) / W * W;
  float *ct, *bias, *xs;
  split_scratch(scratch, ktile, d, ct, bias, xs);
  switch (d) {
    case 8:
      topk_rows<8, 8>(x, n, d, c, cn, num_codes, ktile, k, ct, bias, xs, out_d, out_i);
      break;
    case 16:
      topk_rows<8, 16>(x, n, d, c, cn, num_codes, ktile, k, ct, bias, xs, out_d, out_i);
      break;
    case 32:
      topk_rows<8, 32>(x, n, d, c, cn, num_codes, ktile, k, ct, bias, xs, out_d, out_i);
      break;
    default:
      topk_rows<8, 0>(x, n, d, c, cn, num_codes, ktile, k, ct, bias, xs, out_d, out_i);
  }
  return 0;
}

}  // extern "C"
