#include "common/sse.h"

#include <cassert>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/errors.h"
#include "common/http_connections.h"
#include "common/thread_priority.h"

namespace rbee::common {

namespace {

std::string dump(const nlohmann::json& data) {
  // Invalid UTF-8 from a tokenizer must not abort a stream: replace it.
  return data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string sse_frame(const nlohmann::json& data) {
  const auto type = data.is_object() ? data.find("type") : data.end();
  if (type != data.end() && type->is_string()) {
    return sse_data_frame(dump(data), type->get_ref<const std::string&>());
  }
  return "data: " + dump(data) + "\n\n";
}

std::string sse_data_frame(std::string_view line, std::string_view event) {
  assert(line.find('\n') == std::string_view::npos && "sse_data_frame: one line only");
  assert(event.find_first_of("\r\n") == std::string_view::npos && "sse_data_frame: event name");
  std::string frame;
  frame.reserve(event.size() + line.size() + 16);
  if (!event.empty()) frame.append("event: ").append(event).append("\n");
  frame.append("data: ").append(line).append("\n\n");
  return frame;
}

std::string sse_frame(std::string_view event, const nlohmann::json& data) {
  return "event: " + std::string(event) + "\ndata: " + dump(data) + "\n\n";
}

std::string sse_frame_with_id(const nlohmann::json& data, std::string_view id) {
  assert(id.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos &&
         "sse_frame_with_id: one line of id");
  return "id: " + std::string(id) + "\n" + sse_frame(data);
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

namespace {

// Frames from a producer thread to the connection thread that writes them.
class sse_channel {
 public:
  // Producer side: false once the client is gone.
  bool push(std::string_view frame) {
    std::unique_lock lock(mutex_);
    space_.wait(lock, [&] { return frames_.size() < max_pending || client_gone_; });
    if (client_gone_) return false;
    frames_.emplace_back(frame);
    ready_.notify_one();
    return true;
  }
  void producer_finished() {
    std::lock_guard lock(mutex_);
    producer_done_ = true;
    ready_.notify_one();
  }
  // Connection side: the frames written since the last call, waiting up to `wait` for any.
  // Empty with *finished set once the producer is done and everything was taken.
  std::deque<std::string> take(std::chrono::milliseconds wait, bool* finished) {
    std::unique_lock lock(mutex_);
    ready_.wait_for(lock, wait, [&] { return !frames_.empty() || producer_done_; });
    std::deque<std::string> out;
    out.swap(frames_);
    *finished = producer_done_ && out.empty();
    space_.notify_all();
    return out;
  }
  void client_left() {
    std::lock_guard lock(mutex_);
    client_gone_ = true;
    frames_.clear();
    space_.notify_all();
  }
  bool client_gone() const {
    std::lock_guard lock(mutex_);
    return client_gone_;
  }

 private:
  static constexpr size_t max_pending = 256;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable space_;
  std::deque<std::string> frames_;
  bool producer_done_ = false;
  bool client_gone_ = false;
};

void run_producer(const std::function<void(sse_sink&)>& producer, sse_channel& channel) {
  sse_sink out([&channel](std::string_view f) { return channel.push(f); },
               [&channel] { return !channel.client_gone(); });
  try {
    producer(out);
  } catch (const http_error& e) {
    out.send({{"type", "error"}, {"code", e.code}, {"message", e.message}});
  } catch (const std::exception& e) {
    spdlog::error("SSE producer failed: {}", e.what());
    out.send({{"type", "error"}, {"code", codes::INTERNAL}, {"message", e.what()}});
  }
  if (!out.done_sent()) out.send_done();
  channel.producer_finished();
}

// Writes the producer's frames as they come, and a keep-alive comment after each silent
// interval. A stopping server ends the stream with SHUTTING_DOWN (its daemon has already ended
// the streams it owns; what is left, e.g. a followed log, would hold the stop). Returns false
// when the client is gone.
bool pump_frames(sse_channel& channel, httplib::DataSink& sink,
                 std::chrono::milliseconds keepalive) {
  using steady = std::chrono::steady_clock;
  constexpr std::chrono::milliseconds wake{250};
  auto write = [&](const std::string& f) { return sink.write(f.data(), f.size()); };
  const std::string done_frame = sse_done_frame();
  auto last_write = steady::now();
  bool done_written = false;
  while (true) {
    bool finished = false;
    auto frames = channel.take(std::min(keepalive, wake), &finished);
    if (finished) return true;
    for (const auto& f : frames) {
      if (!write(f)) return false;
      last_write = steady::now();
      done_written = done_written || f == done_frame;
    }
    if (!done_written && guarded_server::serving_thread_stopping()) {
      return write(sse_frame({{"type", "error"},
                              {"code", codes::SHUTTING_DOWN},
                              {"message", "the server is shutting down"}})) &&
             write(done_frame);
    }
    // A client that closed its side is noticed here, not only at the next keep-alive write.
    if (frames.empty() && sink.is_writable && !sink.is_writable()) return false;
    if (steady::now() - last_write >= keepalive) {
      if (!write(sse_comment_frame("keep-alive"))) return false;
      last_write = steady::now();
    }
  }
}

}  // namespace

void serve_sse(httplib::Response& res, std::function<void(sse_sink&)> producer,
               std::chrono::milliseconds keepalive) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider("text/event-stream", [producer = std::move(producer), keepalive](
                                                            size_t, httplib::DataSink& sink) {
    batch_work_scope streaming;  // the producer's thread inherits it
    sse_channel channel;
    std::thread producer_thread([&] { run_producer(producer, channel); });
    bool client_stayed = pump_frames(channel, sink, keepalive);
    channel.client_left();  // no-op after a finished producer; else its sends now fail
    producer_thread.join();
    if (client_stayed) sink.done();
    // false tells httplib the connection is broken, so it is closed, not kept alive.
    return client_stayed;
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
