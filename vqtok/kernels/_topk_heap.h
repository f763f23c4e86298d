// Bounded top-k max-heap of (distance, row) pairs shared by the ADC scan kernels (_cpu_scan.cpp, _cpu_fastscan.cpp).
//
// The heap keeps the k smallest pairs ordered by (distance, row), so exact ties keep the lowest rows; finish()
// sorts them ascending in place and pads to k with (+inf, -1).
// Written for vqtok; no code was copied from other implementations.

#pragma once

#include <cstdint>
#include <limits>

namespace vqtok_heap {

struct Heap {
  float* d;
  int64_t* r;
  int k;
  int n = 0;

  // (a, ra) ranks after (b, rb): larger distance, or equal distance and larger row.
  static bool after(float a, int64_t ra, float b, int64_t rb) { return a > b || (a == b && ra > rb); }

  bool accepts(float v, int64_t row) const { return n < k || after(d[0], r[0], v, row); }

  void push(float v, int64_t row) {
    if (n < k) {
      int i = n++;
      while (i > 0) {
        int p = (i - 1) / 2;
        if (!after(v, row, d[p], r[p])) break;
        d[i] = d[p];
        r[i] = r[p];
        i = p;
      }
      d[i] = v;
      r[i] = row;
      return;
    }
    // Replace the root (the worst kept pair) and sift down.
    sift_down(k, v, row);
  }

  // Places (v, row) at the root of the heap d[0..end) and sifts it down to its slot.
  void sift_down(int end, float v, int64_t row) {
    int i = 0;
    for (;;) {
      int c = 2 * i + 1;
      if (c >= end) break;
      if (c + 1 < end && after(d[c + 1], r[c + 1], d[c], r[c])) ++c;
      if (!after(d[c], r[c], v, row)) break;
      d[i] = d[c];
      r[i] = r[c];
      i = c;
    }
    d[i] = v;
    r[i] = row;
  }

  // Sorts the kept pairs ascending in place (heap sort) and pads to k.
  void finish() {
    for (int end = n - 1; end > 0; --end) {
      float tv = d[0];
      int64_t tr = r[0];
      // Sift the last element down over [0, end).
      sift_down(end, d[end], r[end]);
      d[end] = tv;
      r[end] = tr;
    }
    for (int i = n; i < k; ++i) {
      d[i] = std::numeric_limits<float>::infinity();
      r[i] = -1;
    }
  }
};

inline void offer(Heap& h, float v, int64_t row) {
  if (h.accepts(v, row)) h.push(v, row);
}

}  // namespace vqtok_heap
