// The tests that read the real data sets of ../shared/data (a checkout beside this repository;
// BPTT_SHARED_DATA_DIR in tests/CMakeLists.txt). Where a file is absent, a developer's run skips
// the test with a message naming the path, but a CI run (the environment variable CI set and
// non-empty, as GitHub Actions, GitLab CI and most services set it) fails it: a CI job whose
// data checkout went missing would otherwise pass while testing none of the real data.
//
//   TEST(Csv, Airline) {
//     const std::string p = bptt::test::shared_data("airline-passengers.csv");
//     BPTT_REQUIRE_SHARED_DATA(p);
//     ...
//
// The environment variable BPTT_SHARED_DATA_DIR, when set and non-empty, replaces the directory
// the build names (data kept elsewhere; or a wrong one, to see that CI=1 fails these tests).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#ifndef BPTT_SHARED_DATA_DIR
#define BPTT_SHARED_DATA_DIR "../shared/data"
#endif

namespace bptt::test {

inline std::string shared_data_dir() {
  const char* e = std::getenv("BPTT_SHARED_DATA_DIR");
  return e && *e ? std::string(e) : std::string(BPTT_SHARED_DATA_DIR);
}

// The path of file `name` of the shared data (whether or not it exists).
inline std::string shared_data(const std::string& name) { return shared_data_dir() + "/" + name; }

// Whether this is a CI run: CI set and non-empty.
inline bool in_ci() {
  const char* e = std::getenv("CI");
  return e && *e;
}

}  // namespace bptt::test

// In a test body: ends the test when `path` does not exist, with a failure under CI and a skip
// otherwise, both naming the path. A macro because GTEST_SKIP and FAIL return from the function
// they are written in, which must be the test body for the test to end.
#define BPTT_REQUIRE_SHARED_DATA(path)                                                          \
  do {                                                                                          \
    const std::string bptt_required_path_ = (path);                                             \
    if (!std::filesystem::exists(bptt_required_path_)) {                                        \
      if (::bptt::test::in_ci()) {                                                              \
        FAIL() << bptt_required_path_ << " is absent, and CI is set: a CI run must test the "  \
               << "shared data (check out ../shared/data or set BPTT_SHARED_DATA_DIR)";         \
      }                                                                                         \
      GTEST_SKIP() << bptt_required_path_ << " is absent (../shared/data not checked out; "     \
                   << "with CI set this fails)";                                                \
    }                                                                                           \
  } while (false)
