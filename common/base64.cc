#include "common/base64.h"

#include <openssl/evp.h>

namespace orthrus {

std::string Base64Encode(std::span<const unsigned char> bytes) {
  if (bytes.empty()) return {};
  // EVP_EncodeBlock writes 4 chars per 3 bytes plus a NUL, and no line breaks.
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                      static_cast<int>(bytes.size()));
  out.resize(written < 0 ? 0 : static_cast<size_t>(written));
  return out;
}

std::optional<std::vector<unsigned char>> Base64Decode(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                           text.back() == '\n')) {
    text.remove_suffix(1);
  }
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  for (char c : text) {
    // EVP_DecodeBlock skips embedded whitespace; a header value must not carry any.
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return std::nullopt;
  }
  std::vector<unsigned char> out(text.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the zero bytes that padding stands for.
  size_t padding = 0;
  if (text.ends_with("==")) {
    padding = 2;
  } else if (text.ends_with("=")) {
    padding = 1;
  }
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

}  // namespace orthrus
