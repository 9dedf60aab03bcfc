#pragma once
// Tokens and secret files. Tokens are compared in constant time and never logged (see
// log.h token_fingerprint).

#include <filesystem>
#include <string>
#include <string_view>

namespace rbee::common {

// `bytes` random bytes from OpenSSL RAND_bytes, hex encoded (2*bytes chars).
std::string random_token(size_t bytes = 32);

// Time depends only on the lengths, not on where the contents differ.
bool constant_time_equals(std::string_view a, std::string_view b);

// Writes content to path with mode 0600 (created so from the start, then renamed into place).
void write_secret_file(const std::filesystem::path& path, std::string_view content);
// Reads a secret file, trimming one trailing newline. Throws std::runtime_error naming the path.
std::string read_secret_file(const std::filesystem::path& path);

}  // namespace rbee::common
