#pragma once
// The little Unicode the tokenizers need: UTF-8 decoding that tolerates any bytes, the
// character classes of the pre-tokenizer regexes (\p{L}, \p{N}, \s) and helpers that keep
// streamed text valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rbee::engine::unicode {

enum class cp_class : uint8_t { other, letter, number, whitespace };

// \s is Unicode White_Space; \p{L} / \p{N} come from the generated range table.
cp_class classify(uint32_t cp);

// Decodes the UTF-8 sequence starting at s[pos] (pos < s.size()). Returns its length (1-4) and
// sets cp, or returns 0 when the byte there does not start a valid, complete sequence
// (overlong forms, surrogates and values above U+10FFFF are invalid).
size_t decode(std::string_view s, size_t pos, uint32_t& cp);

void append_utf8(std::string& out, uint32_t cp);

// Splits `bytes` into what can be emitted now and what must wait for more bytes: complete
// characters are appended to `out`, bytes that can never become valid become U+FFFD, and the
// length of a trailing incomplete-but-valid-so-far sequence is returned (0-3 bytes).
size_t append_valid_prefix(std::string& out, std::string_view bytes);

// Every invalid byte replaced by U+FFFD.
std::string sanitize(std::string_view bytes);

}  // namespace rbee::engine::unicode
