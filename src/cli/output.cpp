#include "cli/output.h"

#include <algorithm>
#include <cmath>

namespace rbee::cli {

using nlohmann::json;

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
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.1f/%.1f MB %.1f MB/s", done / 1e6, total / 1e6,
                  event.value("speed_mbps", 0.0));
    label = "Downloading " + progress_bar(fraction) + buf;
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

void print_error(std::FILE* out, const std::string& message, const json& details) {
  std::fprintf(out, "Error: %s\n", message.c_str());
  if (details.is_object() && details.contains("hint") && details["hint"].is_string()) {
    std::fprintf(out, "Hint: %s\n", details["hint"].get<std::string>().c_str());
  }
  std::fflush(out);
}

void print_error(std::FILE* out, const common::http_error& e) {
  if (e.status == 401) {
    json details = e.details.is_object() ? e.details : json::object();
    if (!details.contains("hint")) {
      details["hint"] =
          "set the API key with RBEE_API_KEY or `api_key` in ~/.config/rbee/config.toml";
    }
    print_error(out, "Authentication failed: " + e.message, details);
    return;
  }
  print_error(out, e.message, e.details);
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
