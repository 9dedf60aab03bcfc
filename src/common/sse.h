#pragma once
// Server-Sent Events, shared by worker, hive and queen (SPEC §3: each event `data: <json>`,
// the stream ends with `data: [DONE]`). Producers write through an sse_sink; a client
// disconnect makes send() return false and connected() false, which producers treat as cancel.
// serve_sse runs the producer on a thread of its own and writes its frames to the client from
// the connection's thread, which sends an SSE comment as keep-alive whenever the producer was
// silent for the keep-alive interval (SPEC §3: 5 s): a stalled worker, a cold start or a
// download never leave a client or proxy without bytes. A client that left is noticed at that
// keep-alive at the latest, and the producer's next send fails.

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace rbee::common {

// "data: <json>\n\n"; an object with a string "type" (a stream event, api/stream_events.h) is
// named by it: "event: <type>\ndata: <json>\n\n".
std::string sse_frame(const nlohmann::json& data);
// The same for one line of already serialised JSON (a relayed event) and its event name.
std::string sse_data_frame(std::string_view line, std::string_view event = {});
std::string sse_frame(std::string_view event,
                      const nlohmann::json& data);  // "event: e\ndata: ..\n\n"
// The same as sse_frame(data) with an `id:` line first (no CR, LF or NUL in id).
std::string sse_frame_with_id(const nlohmann::json& data, std::string_view id);
std::string sse_done_frame();                          // "data: [DONE]\n\n"
std::string sse_comment_frame(std::string_view text);  // ": text\n\n" (keep-alive)

class sse_sink {
 public:
  // write returns false once the peer is gone; after that every send is a no-op returning false.
  // is_writable (optional) lets connected() notice a gone peer between sends.
  explicit sse_sink(std::function<bool(std::string_view frame)> write,
                    std::function<bool()> is_writable = {});

  bool send(const nlohmann::json& data);
  bool send_event(std::string_view event, const nlohmann::json& data);
  bool send_done();
  bool send_comment(std::string_view text);
  bool send_raw(std::string_view frame);
  bool connected() const;
  bool done_sent() const { return done_sent_; }

 private:
  std::function<bool(std::string_view)> write_;
  std::function<bool()> is_writable_;
  std::atomic<bool> connected_{true};
  bool done_sent_ = false;
};

inline constexpr std::chrono::milliseconds sse_keepalive_interval{5000};

// Turns res into a text/event-stream response whose body is produced by `producer`, which runs
// on a thread of its own once the handler returned. An exception escaping the producer becomes
// {"type":"error","code","message"}; [DONE] is sent afterwards if the producer did not. The
// producer's sends block while the client is this many frames behind (back-pressure).
void serve_sse(httplib::Response& res, std::function<void(sse_sink&)> producer,
               std::chrono::milliseconds keepalive = sse_keepalive_interval);

struct sse_event {
  std::string event{};  // "" when the stream gave no `event:` line
  std::string data{};   // multi-line data joined with '\n'
  std::string id{};
  bool is_done() const { return data == "[DONE]"; }
  // Parses data as JSON; throws nlohmann::json::parse_error.
  nlohmann::json json() const;
};

// Incremental parser: feed arbitrary chunks; complete events are delivered in order.
// Handles \n, \r\n and \r line endings, events split across chunks, several events per
// chunk, multi-line data, comments and `event:` names.
class sse_parser {
 public:
  void feed(std::string_view chunk, const std::function<void(const sse_event&)>& on_event);
  // Bytes held for the incomplete line and event, to bound memory against hostile peers.
  size_t buffered() const { return line_.size() + current_.data.size(); }

 private:
  void process_line(std::string_view line, const std::function<void(const sse_event&)>& on_event);

  std::string line_;
  bool last_was_cr_ = false;
  sse_event current_;
  bool has_data_ = false;
};

}  // namespace rbee::common
