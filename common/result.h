#pragma once
// Result<T>: the error type at every module boundary. Error::detail is for operators (logs), never
// for devices. g++ 12 has std::expected but not its monadic members, hence the small macros.
#include <expected>
#include <string>
#include <utility>

namespace orthrus {

struct Error {
  std::string code;    // stable snake_case reason code, e.g. "config_unknown_key"
  std::string detail;  // human message naming the thing that failed
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> Fail(std::string code, std::string detail) {
  return std::unexpected<Error>(Error{std::move(code), std::move(detail)});
}

}  // namespace orthrus

#define ORTHRUS_CONCAT_INNER(a, b) a##b
#define ORTHRUS_CONCAT(a, b) ORTHRUS_CONCAT_INNER(a, b)

// Propagates the error of a Result/Status expression.
#define ORTHRUS_TRY(expr)                                             \
  do {                                                                \
    auto&& orthrus_try_result = (expr);                               \
    if (!orthrus_try_result) return std::unexpected(std::move(orthrus_try_result.error())); \
  } while (0)

// Declares `lhs` from the value of a Result expression, or propagates its error.
#define ORTHRUS_ASSIGN_OR_RETURN(lhs, expr)                                      \
  auto ORTHRUS_CONCAT(orthrus_res_, __LINE__) = (expr);                          \
  if (!ORTHRUS_CONCAT(orthrus_res_, __LINE__))                                   \
    return std::unexpected(std::move(ORTHRUS_CONCAT(orthrus_res_, __LINE__).error())); \
  lhs = std::move(*ORTHRUS_CONCAT(orthrus_res_, __LINE__))
