#pragma once
// One `rbee chat` conversation apart from the terminal and the network: the messages so far,
// the model, node and sampling settings, the slash commands that change them, and the OpenAI
// chat body each turn sends (the whole history, so the model sees every earlier turn).

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rbee::cli {

struct chat_settings {
  std::string model;
  std::string node;                                  // empty: the scheduler picks
  std::string system;                                // empty: no system message
  nlohmann::json params = nlohmann::json::object();  // OpenAI sampling fields set by the user
};

class chat_session {
 public:
  explicit chat_session(chat_settings settings);

  // The /v1/chat/completions body for the conversation so far plus the user's next message.
  nlohmann::json request_body(const std::string& user_text) const;
  // Keeps a finished (or stopped) turn in the history.
  void add_turn(const std::string& user_text, const std::string& answer);
  void clear() { messages_ = nlohmann::json::array(); }

  // `/set NAME VALUE`: an empty string when applied, else why not. `system` takes free text;
  // the sampling fields are checked against the contract's limits (api/sampling.h).
  std::string set(const std::string& name, const std::string& value);
  std::string unset(const std::string& name);
  void set_model(std::string model) { settings_.model = std::move(model); }

  // What `/save` writes and `/load` reads: {"model","node","system","params","messages"}.
  nlohmann::json to_json() const;
  // Replaces the session with a saved one; an empty string when it was valid, else why not.
  std::string load(const nlohmann::json& saved);

  const chat_settings& settings() const { return settings_; }
  const nlohmann::json& messages() const { return messages_; }

 private:
  chat_settings settings_;
  nlohmann::json messages_ = nlohmann::json::array();  // user and assistant turns, in order
};

// The names `/set` knows, for its help and its error message.
const std::vector<std::string>& chat_parameter_names();

// A line of input that starts with '/'.
struct chat_command {
  enum class kind { help, clear, model, set, unset, show, save, load, bye, unknown };
  kind what = kind::unknown;
  std::string name;      // the command word as typed ("/foo" for unknown)
  std::string argument;  // the rest of the line, trimmed
};
chat_command parse_chat_command(const std::string& line);

// What `/?` prints.
std::string chat_help_text();

// Gathers typed lines into one message: a line `"""` opens a block that runs to the next `"""`
// line, and a line ending in `\` continues on the next line.
class chat_input {
 public:
  // The complete message once `line` ends it; nullopt while more lines are expected.
  std::optional<std::string> feed(const std::string& line);
  bool in_block() const { return open_; }
  void reset();

 private:
  std::string pending_;
  bool open_ = false;       // inside a """ block
  bool continued_ = false;  // the previous line ended in a backslash
};

}  // namespace rbee::cli
