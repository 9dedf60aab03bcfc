#include "engine/vocab_unicode.h"

#include <algorithm>
#include <iterator>

#include "engine/vocab_unicode_table.h"

namespace rbee::engine::unicode {

namespace {

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

constexpr bool is_continuation(uint8_t b) {
  return (b & 0xC0) == 0x80;
}

// Length of the sequence a lead byte announces and the allowed range of its second byte
// (narrower than 80..BF where overlong forms, surrogates or > U+10FFFF would follow).
struct lead_info {
  size_t len = 0;  // 0: not a lead byte
  uint8_t lo = 0x80;
  uint8_t hi = 0xBF;
};

lead_info lead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {};
}

// How many bytes from s[pos] form a valid prefix of the announced sequence (1..len).
size_t valid_prefix_len(std::string_view s, size_t pos, const lead_info& li) {
  size_t n = 1;
  while (n < li.len && pos + n < s.size()) {
    const auto b = static_cast<uint8_t>(s[pos + n]);
    const bool ok = n == 1 ? (b >= li.lo && b <= li.hi) : is_continuation(b);
    if (!ok) break;
    ++n;
  }
  return n;
}

}  // namespace

cp_class classify(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return cp_class::letter;
    if (cp >= '0' && cp <= '9') return cp_class::number;
    return is_white_space(cp) ? cp_class::whitespace : cp_class::other;
  }
  if (is_white_space(cp)) return cp_class::whitespace;
  const auto& table = detail::letter_number_ranges;
  const auto* it =
      std::upper_bound(std::begin(table), std::end(table), cp,
                       [](uint32_t v, const detail::cp_range& r) { return v < r.first; });
  if (it == std::begin(table)) return cp_class::other;
  --it;
  if (cp > it->last) return cp_class::other;
  return it->cls == 1 ? cp_class::letter : cp_class::number;
}

size_t decode(std::string_view s, size_t pos, uint32_t& cp) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  const lead_info li = lead(b0);
  if (li.len == 1) {
    cp = b0;
    return 1;
  }
  if (li.len == 0 || pos + li.len > s.size() || valid_prefix_len(s, pos, li) != li.len) return 0;
  uint32_t v = b0 & (0xFF >> (li.len + 1));
  for (size_t i = 1; i < li.len; ++i) v = (v << 6) | (static_cast<uint8_t>(s[pos + i]) & 0x3F);
  cp = v;
  return li.len;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t append_valid_prefix(std::string& out, std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint32_t cp = 0;
    const size_t n = decode(bytes, pos, cp);
    if (n > 0) {
      out.append(bytes.substr(pos, n));
      pos += n;
      continue;
    }
    // One U+FFFD per maximal invalid subpart, as decoders conventionally do.
    const lead_info li = lead(static_cast<uint8_t>(bytes[pos]));
    const size_t run = li.len > 1 ? valid_prefix_len(bytes, pos, li) : 1;
    if (li.len > 1 && pos + run == bytes.size()) return run;  // a character still arriving
    append_utf8(out, 0xFFFD);
    pos += run;
  }
  return 0;
}

std::string sanitize(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  if (append_valid_prefix(out, bytes) > 0) append_utf8(out, 0xFFFD);
  return out;
}

}  // namespace rbee::engine::unicode
