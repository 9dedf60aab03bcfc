#pragma once
// Small text helpers shared by the daemons: parsing what tools and servers print (nvidia-smi,
// /proc, HTTP headers) and building URLs.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rbee::common {

// s without leading and trailing spaces, tabs, CRs and newlines.
std::string trim(std::string_view s);

// A plain decimal unsigned integer, surrounding whitespace allowed; nullopt for anything else
// (signs, other characters, empty, more than 19 digits).
std::optional<uint64_t> parse_u64(std::string_view s);

// 1 to 16 hexadecimal digits (either case), nothing else; nullopt otherwise.
std::optional<uint64_t> parse_hex_u64(std::string_view s);
// 16 lower-case hexadecimal digits.
std::string hex_u64(uint64_t value);

// Percent-encodes everything but RFC 3986 unreserved characters: one path segment or query
// value.
std::string url_encode(std::string_view value);

// FNV-1a over pieces of text: a cheap stable id (not a cryptographic hash). Each piece ends with
// a separator, so "ab"+"c" and "a"+"bc" differ.
struct fnv1a {
  uint64_t value = 14695981039346656037ull;
  fnv1a& add(std::string_view text) {
    for (unsigned char c : text) value = (value ^ c) * 1099511628211ull;
    value = (value ^ 0xff) * 1099511628211ull;
    return *this;
  }
};

}  // namespace rbee::common
