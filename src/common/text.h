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

// Percent-encodes everything but RFC 3986 unreserved characters: one path segment or query
// value.
std::string url_encode(std::string_view value);

}  // namespace rbee::common
