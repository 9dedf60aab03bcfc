#include "cli/output.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include "common/text.h"

namespace rbee::cli {

using nlohmann::json;

namespace {
bool json_errors = false;
}  // namespace

narration_printer::narration_printer(std::FILE* out, bool tty) : out_(out), tty_(tty) {}

std::string progress_bar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  int filled = static_cast<int>(std::lround(fraction * width));
  std::string bar;
  bar.reserve(static_cast<size_t>(width) + 8);
  bar.push_back('[');
  bar.append(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(width - filled), '.');
  bar.append("] ");
  bar.append(std::to_string(static_cast<int>(std::lround(fraction * 100))));
  bar.push_back('%');
  return bar;
}

void narration_printer::close_bar() {
  if (bar_open_) {
    std::fputc('\n', out_);
    bar_open_ = false;
  }
}

void narration_printer::draw_bar(const json& event, bool complete) {
  const bool download = event.value("action", "") == "download_progress";
  const char* done_key = download ? "bytes_downloaded" : "layers_loaded";
  const char* total_key = download ? "bytes_total" : "layers_total";
  double total = event.value(total_key, 0.0);
  double done = complete ? total : event.value(done_key, 0.0);
  double fraction = total > 0 ? done / total : (complete ? 1.0 : 0.0);
  std::string label;
  if (download) {
    const double speed_mbps = event.value("speed_mbps", 0.0);
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.1f/%.1f MB", done / 1e6, total / 1e6);
    label = "Downloading " + progress_bar(fraction) + buf;
    // A file that arrives before the hive's first speed report has none: no "0.0 MB/s".
    if (speed_mbps > 0) {
      std::snprintf(buf, sizeof buf, " %.1f MB/s", speed_mbps);
      label += buf;
    }
    if (!complete && speed_mbps > 0 && total > done) {
      label += ", " + format_duration((total - done) / 1e6 / speed_mbps) + " left";
    }
  } else {
    label = "Loading     " + progress_bar(fraction);
  }
  std::fprintf(out_, "\r%s\x1b[K", label.c_str());
  bar_open_ = true;
  bar_event_ = event;
}

void narration_printer::print(const json& event) {
  std::string action = event.value("action", "");
  std::string human = event.value("human", "");
  if (action == "download_note" && bar_open_) {
    // The hive's word during a download (a dropped transfer and why it resumes, the check at
    // the end) goes above the bar, which keeps running and still ends at 100 %.
    std::fprintf(out_, "\r\x1b[K%s\n", human.c_str());
    draw_bar(bar_event_, /*complete=*/false);
    std::fflush(out_);
    return;
  }
  if (tty_ && (action == "download_progress" || action == "loading_progress")) {
    draw_bar(event, /*complete=*/false);
    std::fflush(out_);
    return;
  }
  // The phase a bar shows has ended: its last frame says 100 % (progress events are sampled,
  // so the final one may never come).
  const std::string bar_action = bar_open_ ? bar_event_.value("action", "") : "";
  if ((action == "download_complete" && bar_action == "download_progress") ||
      (action == "worker_ready" && bar_action == "loading_progress")) {
    draw_bar(bar_event_, /*complete=*/true);
  }
  close_bar();
  if (!human.empty()) std::fprintf(out_, "%s\n", human.c_str());
  std::fflush(out_);
}

// "30s", "15m", "2h", "1d" in seconds; nullopt for anything else.
std::optional<int64_t> seconds_in(const std::string& text) {
  if (text.size() < 2) return std::nullopt;
  auto number = common::parse_u64(std::string_view(text).substr(0, text.size() - 1));
  const std::map<char, int64_t> unit = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
  auto u = unit.find(text.back());
  if (!number || u == unit.end() || *number > 3650 * 86400) return std::nullopt;
  return static_cast<int64_t>(*number) * u->second;
}

void set_json_errors(bool on) {
  json_errors = on;
}

bool use_colour(std::FILE* out) {
  const char* no_colour = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  if (no_colour != nullptr && no_colour[0] != '\0') return false;
  if (term != nullptr && std::strcmp(term, "dumb") == 0) return false;
  return ::isatty(::fileno(out)) == 1;
}

void print_error(std::FILE* out, const std::string& message, const json& details,
                 std::string_view code) {
  const bool colour = use_colour(out);
  std::fprintf(out, "%sError:%s %s\n", colour ? "\x1b[1;31m" : "", colour ? "\x1b[0m" : "",
               message.c_str());
  if (details.is_object() && details.contains("hint") && details["hint"].is_string()) {
    std::fprintf(out, "%sHint:%s %s\n", colour ? "\x1b[1m" : "", colour ? "\x1b[0m" : "",
                 details["hint"].get<std::string>().c_str());
  }
  std::fflush(out);
  if (json_errors) {
    json error = {{"code", code},
                  {"message", message},
                  {"details", details.is_null() ? json::object() : details}};
    std::printf("%s\n", json{{"error", error}}.dump(2).c_str());
    std::fflush(stdout);
  }
}

void print_error(std::FILE* out, const common::http_error& e) {
  if (e.status == 401) {
    json details = e.details.is_object() ? e.details : json::object();
    if (!details.contains("hint")) {
      details["hint"] =
          "set the API key with RBEE_API_KEY or `api_key` in ~/.config/rbee/config.toml";
    }
    print_error(out, "Authentication failed: " + e.message, details, e.code);
    return;
  }
  print_error(out, e.message, e.details, e.code);
}

std::string nearest_name(const std::string& word, const std::vector<std::string>& names) {
  // Levenshtein distance, one row at a time.
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t above = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diagonal = above;
      }
    }
    return row[b.size()];
  };
  std::string best;
  size_t best_distance = 0;
  for (const auto& name : names) {
    size_t d = distance(word, name);
    // A prefix ("mod" for "models") is a near miss too.
    if (name.rfind(word, 0) == 0 && !word.empty()) d = std::min<size_t>(d, 1);
    if (best.empty() || d < best_distance) {
      best = name;
      best_distance = d;
    }
  }
  const size_t allowed = word.size() <= 3 ? 1 : std::max<size_t>(2, word.size() / 3);
  return best_distance <= allowed ? best : "";
}

std::string format_duration(double seconds) {
  long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lds", s);
  }
  return buf;
}

std::string format_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t i = 0; i < cells.size(); ++i) {
      s += cells[i];
      if (i + 1 < cells.size()) s += std::string(width[i] - cells[i].size() + 2, ' ');
    }
    return s + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) out += line(r);
  return out;
}

}  // namespace rbee::cli
