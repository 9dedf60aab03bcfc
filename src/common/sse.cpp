#include "common/sse.h"

#include <cassert>

#include <spdlog/spdlog.h>

#include "common/errors.h"

namespace rbee::common {

namespace {

std::string dump(const nlohmann::json& data) {
  // Invalid UTF-8 from a tokenizer must not abort a stream: replace it.
  return data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string sse_frame(const nlohmann::json& data) {
  return "data: " + dump(data) + "\n\n";
}

std::string sse_data_frame(std::string_view line) {
  assert(line.find('\n') == std::string_view::npos && "sse_data_frame: one line only");
  std::string frame;
  frame.reserve(line.size() + 8);
  frame.append("data: ").append(line).append("\n\n");
  return frame;
}

std::string sse_frame(std::string_view event, const nlohmann::json& data) {
  return "event: " + std::string(event) + "\ndata: " + dump(data) + "\n\n";
}

std::string sse_done_frame() {
  return "data: [DONE]\n\n";
}

std::string sse_comment_frame(std::string_view text) {
  std::string out = ": ";
  for (char c : text) out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  out += "\n\n";
  return out;
}

sse_sink::sse_sink(std::function<bool(std::string_view)> write, std::function<bool()> is_writable)
    : write_(std::move(write)), is_writable_(std::move(is_writable)) {}

bool sse_sink::connected() const {
  if (!connected_.load()) return false;
  return !is_writable_ || is_writable_();
}

bool sse_sink::send_raw(std::string_view frame) {
  if (!connected_.load()) return false;
  if (!write_(frame)) connected_.store(false);
  return connected_.load();
}

bool sse_sink::send(const nlohmann::json& data) {
  return send_raw(sse_frame(data));
}

bool sse_sink::send_event(std::string_view event, const nlohmann::json& data) {
  return send_raw(sse_frame(event, data));
}

bool sse_sink::send_done() {
  done_sent_ = true;
  return send_raw(sse_done_frame());
}

bool sse_sink::send_comment(std::string_view text) {
  return send_raw(sse_comment_frame(text));
}

void serve_sse(httplib::Response& res, std::function<void(sse_sink&)> producer) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream", [producer = std::move(producer)](size_t, httplib::DataSink& sink) {
        // No is_writable probe: httplib's blocks up to the write timeout and cannot see a closed
        // peer anyway; a failed write is the reliable signal.
        sse_sink out([&sink](std::string_view f) { return sink.write(f.data(), f.size()); });
        try {
          producer(out);
        } catch (const http_error& e) {
          out.send({{"type", "error"}, {"code", e.code}, {"message", e.message}});
        } catch (const std::exception& e) {
          spdlog::error("SSE producer failed: {}", e.what());
          out.send({{"type", "error"}, {"code", codes::INTERNAL}, {"message", e.what()}});
        }
        if (!out.done_sent()) out.send_done();
        sink.done();
        // false tells httplib the connection is broken, so it is closed, not kept alive.
        return out.connected();
      });
}

nlohmann::json sse_event::json() const {
  return nlohmann::json::parse(data);
}

void sse_parser::feed(std::string_view chunk,
                      const std::function<void(const sse_event&)>& on_event) {
  for (char c : chunk) {
    if (last_was_cr_) {
      last_was_cr_ = false;
      if (c == '\n') continue;  // the \n of a \r\n pair
    }
    if (c == '\r' || c == '\n') {
      last_was_cr_ = c == '\r';
      process_line(line_, on_event);
      line_.clear();
    } else {
      line_.push_back(c);
    }
  }
}

void sse_parser::process_line(std::string_view line,
                              const std::function<void(const sse_event&)>& on_event) {
  if (line.empty()) {
    // A blank line dispatches the event; events without data are dropped (per the SSE spec).
    if (has_data_) on_event(current_);
    current_ = sse_event{};
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // comment / keep-alive
  auto colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    current_.event = value;
  } else if (field == "id") {
    current_.id = value;
  }
  // "retry" and unknown fields are ignored.
}

}  // namespace rbee::common
