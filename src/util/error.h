// Errors: user-facing failures carry "[component] object: what is wrong (numbers)".
// Thrown inside a layer, caught at the API/CLI/HTTP boundary; internal invariants use CP_ASSERT.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace coppice {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Builds "[component] message" and throws coppice::Error.
[[noreturn]] inline void fail(const std::string& component, const std::string& msg) {
  throw Error("[" + component + "] " + msg);
}

// A value or an error message; the boundary type of loader/parser APIs.
template <typename T>
class Result {
 public:
  Result(T v) : v_(std::move(v)) {}  // NOLINT(google-explicit-constructor)
  static Result err(std::string msg) { Result r; r.v_ = ErrMsg{std::move(msg)}; return r; }
  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<T>(v_); }
  const T& value() const { return std::get<T>(v_); }
  T* operator->() { return &std::get<T>(v_); }
  const std::string& error() const { return std::get<ErrMsg>(v_).msg; }

 private:
  struct ErrMsg { std::string msg; };
  Result() = default;
  std::variant<T, ErrMsg> v_;
};

// Runs f() and converts a thrown coppice::Error into Result::err.
template <typename F>
auto catch_error(F&& f) -> Result<decltype(f())> {
  try {
    return f();
  } catch (const Error& e) {
    return Result<decltype(f())>::err(e.what());
  }
}

}  // namespace coppice

// Always-on invariant check (internal bugs, not user input).
#define CP_ASSERT(cond)                                                              \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "coppice: internal assertion failed: %s (%s:%d)\n", #cond, \
                   __FILE__, __LINE__);                                              \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

// Hot-loop check, compiled out in release builds.
#ifdef NDEBUG
#define CP_DASSERT(cond) ((void)0)
#else
#define CP_DASSERT(cond) CP_ASSERT(cond)
#endif
