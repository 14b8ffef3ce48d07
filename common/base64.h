#pragma once
// Standard (RFC 4648, padded) base64 (Negotiate tokens, Basic credentials), via OpenSSL.
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace orthrus {

std::string Base64Encode(std::span<const unsigned char> bytes);
// nullopt for anything but canonical padded base64 (surrounding spaces are tolerated).
std::optional<std::vector<unsigned char>> Base64Decode(std::string_view text);

}  // namespace orthrus
