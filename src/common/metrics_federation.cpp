#include "common/metrics_federation.h"

#include <cctype>
#include <cstdlib>

namespace rbee::common {

namespace {

bool is_name_char(char c, bool first) {
  bool alpha = std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  return first ? alpha : alpha || std::isdigit(static_cast<unsigned char>(c));
}

// Reads `name="value"` pairs of a label block (after '{') up to its '}'; false when malformed.
// The values stay escaped as they were written.
bool read_labels(std::string_view text, size_t& pos, metric_labels& out) {
  while (pos < text.size() && text[pos] != '}') {
    size_t start = pos;
    while (pos < text.size() && is_name_char(text[pos], pos == start)) ++pos;
    if (pos == start || pos + 1 >= text.size() || text[pos] != '=' || text[pos + 1] != '"') {
      return false;
    }
    std::string name(text.substr(start, pos - start));
    pos += 2;
    std::string value;
    while (pos < text.size() && text[pos] != '"') {
      if (text[pos] == '\\' && pos + 1 < text.size()) value.push_back(text[pos++]);
      value.push_back(text[pos++]);
    }
    if (pos >= text.size()) return false;
    ++pos;  // closing quote
    out.emplace_back(std::move(name), std::move(value));
    if (pos < text.size() && text[pos] == ',') ++pos;
  }
  if (pos >= text.size()) return false;
  ++pos;  // '}'
  return true;
}

// "<float>" or "<float> <timestamp ms>"; floats as the text format writes them (+Inf, NaN, ...).
bool is_sample_value(std::string_view text) {
  size_t space = text.find(' ');
  std::string value(text.substr(0, space));
  if (value != "+Inf" && value != "-Inf" && value != "NaN") {
    char* end = nullptr;
    std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size()) return false;
  }
  if (space == std::string_view::npos) return true;
  std::string_view timestamp = text.substr(space + 1);
  if (timestamp.starts_with('-')) timestamp.remove_prefix(1);
  if (timestamp.empty()) return false;
  for (char c : timestamp) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string_view trim_end(std::string_view s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string label_sample(std::string_view line, const metric_labels& labels, std::string* name) {
  size_t pos = 0;
  while (pos < line.size() && is_name_char(line[pos], pos == 0)) ++pos;
  if (pos == 0) return {};
  *name = std::string(line.substr(0, pos));
  metric_labels own;
  if (pos < line.size() && line[pos] == '{') {
    ++pos;
    if (!read_labels(line, pos, own)) return {};
  }
  if (pos >= line.size() || line[pos] != ' ') return {};
  std::string_view value = line.substr(pos + 1);
  if (!is_sample_value(value)) return {};

  metric_labels all;
  for (const auto& added : labels) {
    bool overridden = false;
    for (const auto& o : own) overridden = overridden || o.first == added.first;
    if (!overridden) all.emplace_back(added.first, escape_label_value(added.second));
  }
  all.insert(all.end(), own.begin(), own.end());
  std::string out = *name;
  if (!all.empty()) {
    out.push_back('{');
    for (size_t i = 0; i < all.size(); ++i) {
      if (i) out.push_back(',');
      out += all[i].first + "=\"" + all[i].second + "\"";
    }
    out.push_back('}');
  }
  out.push_back(' ');
  out += value;
  return out;
}

exposition_merger::family& exposition_merger::family_of(const std::string& sample_name,
                                                        const std::string& current_family) {
  if (!current_family.empty() && sample_name.starts_with(current_family)) {
    std::string_view suffix = std::string_view(sample_name).substr(current_family.size());
    if (suffix.empty() || suffix == "_bucket" || suffix == "_sum" || suffix == "_count") {
      return families_[current_family];
    }
  }
  return families_[sample_name];
}

void exposition_merger::add(std::string_view text, const metric_labels& labels) {
  std::string current;  // the family of the last # TYPE line
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = trim_end(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty()) continue;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      std::string_view rest = line.substr(7);
      size_t space = rest.find(' ');
      if (space == std::string_view::npos || space == 0) continue;
      std::string name(rest.substr(0, space));
      auto& f = families_[name];
      if (line[2] == 'H') {
        if (f.help.empty()) f.help = std::string(rest.substr(space + 1));
      } else {
        if (f.type.empty()) f.type = std::string(rest.substr(space + 1));
        current = name;
      }
      continue;
    }
    if (line.front() == '#') continue;
    std::string name;
    std::string sample = label_sample(line, labels, &name);
    if (!sample.empty()) family_of(name, current).samples.push_back(std::move(sample));
  }
}

std::string exposition_merger::render() const {
  std::string out;
  for (const auto& [name, f] : families_) {
    if (f.samples.empty()) continue;
    if (!f.help.empty()) out += "# HELP " + name + " " + f.help + "\n";
    if (!f.type.empty()) out += "# TYPE " + name + " " + f.type + "\n";
    for (const auto& s : f.samples) out += s + "\n";
  }
  return out;
}

}  // namespace rbee::common
