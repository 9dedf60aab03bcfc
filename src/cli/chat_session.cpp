#include "cli/chat_session.h"

#include <algorithm>

#include "api/sampling.h"
#include "common/errors.h"
#include "common/text.h"

namespace rbee::cli {

namespace {

using nlohmann::json;

// The sampling fields of the OpenAI chat body that `/set` may change.
const std::vector<std::string> sampling_names = {"temperature",
                                                 "top_p",
                                                 "top_k",
                                                 "min_p",
                                                 "repeat_penalty",
                                                 "seed",
                                                 "stop",
                                                 "max_tokens",
                                                 "presence_penalty",
                                                 "frequency_penalty"};

// A typed value as JSON: numbers stay numbers, anything else is text.
json typed_value(const std::string& text) {
  auto parsed = json::parse(text, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_number()) return parsed;
  return text;
}

// Why `value` is no good for `name`, or "" when it is.
std::string check_parameter(const std::string& name, const json& value) {
  if (name == "stop") return "";
  if (!value.is_number()) return name + " takes a number, not '" + value.get<std::string>() + "'";
  if (name == "max_tokens") {
    const auto limits = api::max_tokens_limits;
    if (!value.is_number_integer() || value.get<int64_t>() < limits.min ||
        value.get<int64_t>() > limits.max) {
      return "max_tokens must be a whole number from " + std::to_string(limits.min) + " to " +
             std::to_string(limits.max);
    }
    return "";
  }
  try {
    api::sampling_options::from_json({{name, value}});
  } catch (const common::http_error& e) {
    return e.message;
  }
  return "";
}

}  // namespace

chat_session::chat_session(chat_settings settings) : settings_(std::move(settings)) {}

json chat_session::request_body(const std::string& user_text) const {
  json messages = json::array();
  if (!settings_.system.empty()) {
    messages.push_back({{"role", "system"}, {"content", settings_.system}});
  }
  for (const auto& m : messages_) messages.push_back(m);
  messages.push_back({{"role", "user"}, {"content", user_text}});
  json body = {{"model", settings_.model},
               {"messages", messages},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (!settings_.node.empty()) body["node"] = settings_.node;
  for (const auto& [name, value] : settings_.params.items()) body[name] = value;
  return body;
}

void chat_session::add_turn(const std::string& user_text, const std::string& answer) {
  messages_.push_back({{"role", "user"}, {"content", user_text}});
  messages_.push_back({{"role", "assistant"}, {"content", answer}});
}

std::string chat_session::set(const std::string& name, const std::string& value) {
  if (value.empty()) return "usage: /set " + (name.empty() ? "NAME" : name) + " VALUE";
  if (name == "system") {
    settings_.system = value;
    return "";
  }
  if (std::find(sampling_names.begin(), sampling_names.end(), name) == sampling_names.end()) {
    std::string known;
    for (const auto& n : chat_parameter_names()) known += (known.empty() ? "" : ", ") + n;
    return "unknown parameter '" + name + "' (known: " + known + ")";
  }
  json typed = name == "stop" ? json(json::array({value})) : typed_value(value);
  if (name != "stop") {
    std::string why = check_parameter(name, typed);
    if (!why.empty()) return why;
  }
  settings_.params[name] = typed;
  return "";
}

std::string chat_session::unset(const std::string& name) {
  if (name == "system") {
    settings_.system.clear();
    return "";
  }
  if (!settings_.params.contains(name)) return "'" + name + "' is not set";
  settings_.params.erase(name);
  return "";
}

json chat_session::to_json() const {
  return {{"model", settings_.model},
          {"node", settings_.node},
          {"system", settings_.system},
          {"params", settings_.params},
          {"messages", messages_}};
}

std::string chat_session::load(const json& saved) {
  if (!saved.is_object() || !saved.contains("messages") || !saved["messages"].is_array()) {
    return "not a saved chat (no messages list)";
  }
  for (const auto& m : saved["messages"]) {
    const bool valid = m.is_object() && m.contains("role") && m["role"].is_string() &&
                       m.contains("content") && m["content"].is_string();
    if (!valid) return "a saved message needs a string role and content";
  }
  chat_session loaded(settings_);
  for (const char* key : {"model", "node", "system"}) {
    if (saved.contains(key) && !saved[key].is_string()) {
      return std::string(key) + " must be a string";
    }
  }
  loaded.settings_.model = saved.value("model", settings_.model);
  loaded.settings_.node = saved.value("node", settings_.node);
  loaded.settings_.system = saved.value("system", std::string());
  loaded.settings_.params = json::object();
  const json params = saved.value("params", json::object());
  if (!params.is_object()) return "params must be an object";
  for (const auto& [name, value] : params.items()) {
    std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    if (name == "stop" && value.is_array() && value.size() == 1 && value[0].is_string()) {
      text = value[0].get<std::string>();
    }
    std::string why = loaded.set(name, text);
    if (!why.empty()) return why;
  }
  loaded.messages_ = saved["messages"];
  *this = std::move(loaded);
  return "";
}

const std::vector<std::string>& chat_parameter_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> all = sampling_names;
    all.push_back("system");
    return all;
  }();
  return names;
}

chat_command parse_chat_command(const std::string& line) {
  std::string text = common::trim(line);
  size_t space = text.find_first_of(" \t");
  chat_command c;
  c.name = text.substr(0, space);
  c.argument = space == std::string::npos ? "" : common::trim(text.substr(space + 1));
  using k = chat_command::kind;
  static const std::vector<std::pair<std::vector<std::string>, k>> words = {
      {{"/?", "/help"}, k::help}, {{"/clear"}, k::clear}, {{"/model"}, k::model},
      {{"/set"}, k::set},         {{"/unset"}, k::unset}, {{"/show"}, k::show},
      {{"/save"}, k::save},       {{"/load"}, k::load},   {{"/bye", "/exit"}, k::bye}};
  for (const auto& [names, what] : words) {
    if (std::find(names.begin(), names.end(), c.name) != names.end()) c.what = what;
  }
  return c;
}

std::string chat_help_text() {
  std::string params;
  for (const auto& n : chat_parameter_names()) params += (params.empty() ? "" : ", ") + n;
  return "Commands:\n"
         "  /set NAME VALUE   change a setting, e.g. /set temperature 0.7 ("
         "names: " +
         params +
         ")\n"
         "  /unset NAME       back to the worker's default\n"
         "  /show             the model, node, settings and number of turns\n"
         "  /model NAME       talk to another model (the conversation is kept)\n"
         "  /clear            forget the conversation (the system prompt stays)\n"
         "  /save FILE        write the conversation and settings as JSON\n"
         "  /load FILE        continue a saved conversation\n"
         "  /bye              leave (or Ctrl+D)\n"
         "Ctrl+C stops an answer. Start a multi-line message with \"\"\" and end it with "
         "\"\"\",\nor end a line with \\ to continue it.\n";
}

std::optional<std::string> chat_input::feed(const std::string& line) {
  if (open_) {
    if (common::trim(line) == "\"\"\"") {
      std::string done = pending_;
      reset();
      return done;
    }
    pending_ += line + "\n";
    return std::nullopt;
  }
  std::string text = line;
  if (!continued_ && common::trim(text).rfind("\"\"\"", 0) == 0) {
    open_ = true;
    std::string first = common::trim(text).substr(3);
    if (!first.empty()) pending_ = first + "\n";
    return std::nullopt;
  }
  if (!text.empty() && text.back() == '\\') {
    text.pop_back();
    pending_ += text + "\n";
    continued_ = true;
    return std::nullopt;
  }
  std::string done = pending_ + text;
  reset();
  return done;
}

void chat_input::reset() {
  pending_.clear();
  open_ = false;
  continued_ = false;
}

}  // namespace rbee::cli
