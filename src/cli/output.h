#pragma once
// What the CLI prints: narration lines and progress bars on stderr, errors with the server's
// hint, and tables for listings.

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/errors.h"

namespace rbee::cli {

// One line per phase; download/loading progress as a bar redrawn in place when stderr is a
// terminal, plain lines otherwise. The hive's notes during a download (download_note: why a
// transfer resumes) are printed above a running bar, which is then drawn again.
class narration_printer {
 public:
  explicit narration_printer(std::FILE* out, bool tty);
  void print(const nlohmann::json& event);
  // Ends an open progress bar line (before printing anything else to out).
  void close_bar();

 private:
  void draw_bar(const nlohmann::json& event, bool complete);

  std::FILE* out_;
  bool tty_;
  bool bar_open_ = false;
  nlohmann::json bar_event_;  // the last progress event drawn, to finish its bar at 100 %
};

// "[#####.....] 42%"
std::string progress_bar(double fraction, int width = 30);

// "Error: <message>" and, when the server gave one, "Hint: <hint>"; coloured only on a terminal
// without NO_COLOR. With json_errors on, the error is also printed on stdout as
// {"error":{"code","message","details"}} for scripts that pass --json.
void print_error(std::FILE* out, const std::string& message, const nlohmann::json& details,
                 std::string_view code = "ERROR");
void print_error(std::FILE* out, const common::http_error& e);
void set_json_errors(bool on);

// Whether out may carry colour: a terminal, NO_COLOR unset, TERM not "dumb".
bool use_colour(std::FILE* out);

// The closest of names to word when it looks like a typo of it (a small edit distance), else "".
std::string nearest_name(const std::string& word, const std::vector<std::string>& names);

// "1m05s", "42s", "2h03m": a remaining time for a progress bar.
std::string format_duration(double seconds);
// "30s", "15m", "2h", "1d" in seconds; nullopt for anything else.
std::optional<int64_t> seconds_in(const std::string& text);

// Fixed-width table (columns sized to their widest cell).
std::string format_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows);

}  // namespace rbee::cli
