// The one way tests compare numbers: relative error per element with a floor, where anything
// non-finite fails.
//
//   close(got, ref, tol)  ⇔  got and ref are finite and |got − ref| ≤ tol.rel · max(|ref|, tol.floor)
//
// `floor` keeps the bound meaningful where ref is near zero: floor = 1 is the old
// "tol · max(1, |ref|)" (absolute below 1, relative above), a small floor makes the check
// relative down to |ref| = floor. A NaN or an infinity in either value is never close: plain
// `std::max(err, |a − b|)` keeps err when the difference is NaN and so lets NaN pass; nothing
// here is written that way.
//
// expect_close() checks whole tensors element by element (sizes must match) and reports how
// many elements failed, the worst relative error and the first mismatches by name;
// max_rel_error() gives that worst error as a number (+inf when anything is non-finite), for
// tests that assert on it themselves.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace bptt::test {

struct Tol {
  double rel = 0;    // bound on |got − ref| / max(|ref|, floor)
  double floor = 1;  // the |ref| below which the bound stops shrinking
};

// |got − ref| / max(|ref|, floor); 0 when they are equal (also where floor = ref = 0), +inf
// when either is non-finite.
inline double rel_error(double got, double ref, double floor) {
  if (!std::isfinite(got) || !std::isfinite(ref)) return std::numeric_limits<double>::infinity();
  if (got == ref) return 0;
  return std::abs(got - ref) / std::max(std::abs(ref), floor);
}

inline bool close(double got, double ref, Tol tol) {
  return rel_error(got, ref, tol.floor) <= tol.rel;
}

// The largest rel_error over n elements (+inf if any is non-finite, 0 for n = 0).
template <class A, class B>
double max_rel_error(const A* got, const B* ref, std::size_t n, double floor) {
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double e = rel_error(double(got[i]), double(ref[i]), floor);
    if (!(e <= worst)) worst = e;  // written so that a NaN could not be skipped either
  }
  return worst;
}

template <class A, class B>
double max_rel_error(const std::vector<A>& got, const std::vector<B>& ref, double floor) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  return max_rel_error(got.data(), ref.data(), got.size(), floor);
}

// max |v| over n elements (+inf if any is non-finite): the scale of a tensor, for floors
// written as a fraction of it.
template <class A>
double max_abs(const A* v, std::size_t n) {
  double m = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double a = std::abs(double(v[i]));
    if (!(a <= m)) m = std::isfinite(a) ? a : std::numeric_limits<double>::infinity();
  }
  return m;
}

inline std::string index_name(std::size_t i) { return "[" + std::to_string(i) + "]"; }

// EXPECTs close(got[i], ref[i], tol) for every i < n, naming the first few mismatches by
// name(i). Returns the worst rel_error.
template <class A, class B>
double expect_close(const std::string& what, const A* got, const B* ref, std::size_t n, Tol tol,
                    const std::function<std::string(std::size_t)>& name = index_name) {
  std::size_t bad = 0;
  double worst = 0;
  std::ostringstream msg;
  msg.precision(9);
  for (std::size_t i = 0; i < n; ++i) {
    const double e = rel_error(double(got[i]), double(ref[i]), tol.floor);
    if (!(e <= worst)) worst = e;
    if (e <= tol.rel) continue;
    if (++bad <= 8)
      msg << "\n  " << name(i) << ": " << double(got[i]) << " vs " << double(ref[i])
          << " (relative error " << e << ")";
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << n << " elements differ by more than "
                     << tol.rel << " · max(|ref|, " << tol.floor << "); worst " << worst
                     << msg.str();
  return worst;
}

template <class A, class B>
double expect_close(const std::string& what, const std::vector<A>& got,
                    const std::vector<B>& ref, Tol tol,
                    const std::function<std::string(std::size_t)>& name = index_name) {
  EXPECT_EQ(got.size(), ref.size()) << what << ": sizes differ";
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  return expect_close(what, got.data(), ref.data(), got.size(), tol, name);
}

}  // namespace bptt::test
