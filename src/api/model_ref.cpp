#include "api/model_ref.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "common/errors.h"

namespace rbee::api {
namespace {

constexpr size_t max_ref_len = 512;

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

// One path segment of a hub name: [A-Za-z0-9._-]+, not "." or "..".
bool valid_segment(std::string_view s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), is_name_char);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

[[noreturn]] void reject(std::string_view field, std::string_view text, std::string reason) {
  throw common::invalid_request(field,
                                "Invalid model reference '" + std::string(text) + "': " + reason,
                                {{"reference", std::string(text)},
                                 {"accepted",
                                  "hf:ORG/REPO:FILE.gguf, hf:ORG/REPO, "
                                  "file:/abs/path.gguf, or a catalog alias"}});
}

}  // namespace

bool is_safe_repo_file(std::string_view file) {
  if (file.size() > max_ref_len) return false;
  auto segments = split(file, '/');
  return std::all_of(segments.begin(), segments.end(), valid_segment);
}

bool has_gguf_extension(std::string_view file_name) {
  if (file_name.size() < 5) return false;
  std::string tail(file_name.substr(file_name.size() - 5));
  std::transform(tail.begin(), tail.end(), tail.begin(), ::tolower);
  return tail == ".gguf";
}

std::string model_ref::canonical() const {
  switch (kind) {
    case ref_kind::hf_file:
      return "hf:" + org + "/" + repo + ":" + file;
    case ref_kind::hf_repo:
      return "hf:" + org + "/" + repo;
    case ref_kind::local_file:
      return "file:" + path.string();
    case ref_kind::alias:
      return alias;
  }
  return alias;
}

bool model_ref::is_satisfied_by(const model_ref& stored) const {
  auto same_name = [](std::string_view a, std::string_view b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
      return std::tolower(static_cast<unsigned char>(x)) ==
             std::tolower(static_cast<unsigned char>(y));
    });
  };
  switch (kind) {
    case ref_kind::hf_repo:
      return (stored.kind == ref_kind::hf_file || stored.kind == ref_kind::hf_repo) &&
             same_name(org, stored.org) && same_name(repo, stored.repo);
    case ref_kind::hf_file:
      return stored.kind == ref_kind::hf_file && same_name(org, stored.org) &&
             same_name(repo, stored.repo) && file == stored.file;
    case ref_kind::local_file:
    case ref_kind::alias:
      return canonical() == stored.canonical();
  }
  return false;
}

std::filesystem::path model_ref::relative_store_path() const {
  return std::filesystem::path("hf") / org / repo / file;
}

model_ref parse_model_ref(std::string_view text, std::string_view field) {
  if (text.empty()) reject(field, text, "it is empty");
  if (text.size() > max_ref_len) {
    reject(field, text.substr(0, 64), "longer than " + std::to_string(max_ref_len) + " characters");
  }
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || u >= 0x80 || c == ' ' || c == '\\') {
      reject(field, text, "it contains a space, control, backslash or non-ASCII character");
    }
  }
  if (text.find("://") != std::string_view::npos) {
    reject(field, text,
           "URLs are not accepted; use hf:ORG/REPO[:FILE] (the hub is set by HF_ENDPOINT)");
  }

  model_ref ref;
  if (text.starts_with("hf:")) {
    std::string_view rest = text.substr(3);
    size_t colon = rest.find(':');
    std::string_view repo_part = rest.substr(0, colon);
    auto names = split(repo_part, '/');
    if (names.size() != 2)
      reject(field, text, "expected hf:ORG/REPO (organisation and repository)");
    if (!valid_segment(names[0]) || !valid_segment(names[1])) {
      reject(field, text,
             "organisation and repository may only contain letters, digits, '.', '-', '_'");
    }
    ref.org = names[0];
    ref.repo = names[1];
    if (colon == std::string_view::npos) {
      ref.kind = ref_kind::hf_repo;
      return ref;
    }
    std::string_view file = rest.substr(colon + 1);
    if (file.empty()) reject(field, text, "the file after ':' is empty");
    if (!is_safe_repo_file(file)) {
      reject(field, text, "the file path must be relative, without '..' or empty segments");
    }
    if (!has_gguf_extension(file)) reject(field, text, "the file must be a .gguf file");
    ref.kind = ref_kind::hf_file;
    ref.file = file;
    return ref;
  }
  if (text.starts_with("file:")) {
    std::string_view path = text.substr(5);
    if (!path.starts_with('/')) reject(field, text, "file: needs an absolute path");
    for (auto segment : split(path.substr(1), '/')) {
      if (segment == "..") reject(field, text, "'..' is not allowed in paths");
    }
    if (!has_gguf_extension(path)) reject(field, text, "the file must be a .gguf file");
    ref.kind = ref_kind::local_file;
    ref.path = std::filesystem::path(path).lexically_normal();
    return ref;
  }
  // A catalog alias: an id ("tinyllama-q4_k_m") or any name without path tricks.
  if (text.starts_with('/') && has_gguf_extension(text)) {
    reject(field, text,
           "a local file is named with 'file:' (file:" + std::string(text) +
               "); a hub repository with 'hf:' (hf:ORG/REPO)");
  }
  if (text.find('/') != std::string_view::npos && text.find("..") == std::string_view::npos &&
      !text.starts_with('/') && split(text, '/').size() == 2) {
    reject(field, text,
           "a hub repository is named with 'hf:' (hf:" + std::string(text) +
               "); a local file with 'file:/abs/path.gguf'");
  }
  if (text.find("..") != std::string_view::npos || text.find('/') != std::string_view::npos) {
    reject(field, text, "aliases may not contain '/' or '..'");
  }
  for (char c : text) {
    if (!is_name_char(c) && c != ':') {
      reject(field, text, "aliases may only contain letters, digits, '.', '-', '_', ':'");
    }
  }
  ref.kind = ref_kind::alias;
  ref.alias = text;
  return ref;
}

bool reference_satisfied_by(std::string_view wanted, std::string_view stored) {
  if (wanted == stored) return true;
  auto w = try_parse_model_ref(wanted);
  auto s = w ? try_parse_model_ref(stored) : std::nullopt;
  return w && s && w->is_satisfied_by(*s);
}

std::optional<model_ref> try_parse_model_ref(std::string_view text) {
  try {
    return parse_model_ref(text);
  } catch (const common::http_error&) {
    return std::nullopt;
  }
}

}  // namespace rbee::api
