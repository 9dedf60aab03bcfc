// Chat templates as models ship them, rendered by rbee's Jinja engine, compared byte for byte
// with what Hugging Face transformers renders (tests/engine/data/chat_templates: the templates,
// the conversations in cases.json, and expected.json written by render_reference.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "template/template.h"

namespace rbee::tmpl {
namespace {

using json = nlohmann::ordered_json;

const std::string data_dir = std::string(RBEE_SOURCE_DIR) + "/tests/engine/data/chat_templates";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json read_json(const std::string& name) {
  return json::parse(read_file(data_dir + "/" + name));
}

// The context render_reference.py passes: what transformers' apply_chat_template passes.
json context_for(const json& conversation, const json& tool_sets, const std::string& bos,
                 const std::string& eos) {
  json context = {
      {"messages", conversation["messages"]},
      {"tools", conversation.contains("tools") ? tool_sets[conversation["tools"].get<std::string>()]
                                               : json(nullptr)},
      {"add_generation_prompt", conversation["add_generation_prompt"]},
      {"bos_token", bos},
      {"eos_token", eos},
  };
  if (conversation.contains("extra")) {
    for (const auto& [k, v] : conversation["extra"].items()) context[k] = v;
  }
  return context;
}

render_options pinned_clock(const json& now) {
  render_options options;
  options.now = [now] {
    std::tm tm{};
    tm.tm_year = now[0].get<int>() - 1900;
    tm.tm_mon = now[1].get<int>() - 1;
    tm.tm_mday = now[2].get<int>();
    tm.tm_hour = now[3].get<int>();
    tm.tm_min = now[4].get<int>();
    tm.tm_sec = now[5].get<int>();
    std::mktime(&tm);  // fills in the weekday and day of the year
    return tm;
  };
  return options;
}

TEST(chat_template_golden, every_template_renders_every_conversation_as_transformers_does) {
  const json cases = read_json("cases.json");
  const json expected = read_json("expected.json");
  const render_options options = pinned_clock(cases["now"]);
  int compared = 0;
  for (const auto& [name, special] : cases["templates"].items()) {
    SCOPED_TRACE("template " + name);
    const auto program =
        chat_template_program::parse(read_file(data_dir + "/templates/" + name + ".jinja"));
    for (const json& conversation : cases["conversations"]) {
      const std::string conversation_name = conversation["name"];
      SCOPED_TRACE("conversation " + conversation_name);
      const json& want = expected["templates"][name][conversation_name];
      const json context =
          context_for(conversation, cases["tool_sets"], special["bos_token"], special["eos_token"]);
      if (want.contains("error")) {
        try {
          program.render(context, options);
          ADD_FAILURE() << "expected the template to raise: " << want["error"];
        } catch (const template_error& e) {
          EXPECT_EQ(e.what_kind, template_error::kind::raised) << e.what();
          EXPECT_NE(std::string(e.what()).find(want["error"].get<std::string>()), std::string::npos)
              << e.what();
        }
      } else {
        try {
          EXPECT_EQ(program.render(context, options), want["output"].get<std::string>());
        } catch (const template_error& e) {
          ADD_FAILURE() << e.what();
        }
      }
      ++compared;
    }
  }
  EXPECT_GE(compared, 14 * 10);
}

// A copy of stories260K.gguf whose tokenizer.chat_template is `chat_template`.
std::string write_model_with_template(const std::string& chat_template, const std::string& name) {
  const auto source = gguf::file::open(std::string(RBEE_SHARED_MODELS_DIR) + "/stories260K.gguf");
  gguf::writer w;
  for (const auto& entry : source.metadata()) w.set(entry);
  w.set_string("tokenizer.chat_template", chat_template);
  for (const auto& t : source.tensors()) {
    w.add_tensor(t.name, t.type, t.shape, {t.data, t.n_bytes});
  }
  const auto dir = std::filesystem::temp_directory_path() / "rbee-chat-template-test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / (name + ".gguf")).string();
  w.write(path);
  return path;
}

// The engine's messages as an OpenAI client sends them: tool call arguments as JSON text.
std::vector<engine::chat_message> engine_messages(const json& messages) {
  std::vector<engine::chat_message> out;
  for (const json& m : messages) {
    engine::chat_message message{m["role"], m["content"]};
    if (m.contains("tool_calls")) {
      json calls = m["tool_calls"];
      for (json& call : calls) call["function"]["arguments"] = call["function"]["arguments"].dump();
      message.tool_calls_json = calls.dump();
    }
    message.tool_call_id = m.value("tool_call_id", "");
    message.name = m.value("name", "");
    out.push_back(std::move(message));
  }
  return out;
}

// "Written into test GGUFs": the template travels in the model file, and
// engine::apply_chat_template renders it with the Jinja engine (BOS/EOS texts from the
// vocabulary, tools and tool calls from the engine's plain structs) exactly as transformers does.
TEST(chat_template_golden, templates_written_into_a_gguf_render_through_the_engine) {
  const json cases = read_json("cases.json");
  const json expected = read_json("expected.json");
  json conversations;
  for (const json& c : cases["conversations"]) conversations[c["name"].get<std::string>()] = c;
  int compared = 0;
  for (const auto& [name, by_conversation] : expected["engine"].items()) {
    SCOPED_TRACE("template " + name);
    const std::string path =
        write_model_with_template(read_file(data_dir + "/templates/" + name + ".jinja"), name);
    const auto model = engine::model_load(path, engine::model_default_params());
    EXPECT_EQ(engine::model_get_info(*model).chat_template,
              read_file(data_dir + "/templates/" + name + ".jinja"));
    for (const auto& [conversation_name, want] : by_conversation.items()) {
      SCOPED_TRACE("conversation " + conversation_name);
      const json& conversation = conversations[conversation_name];
      engine::chat_render_options options;
      options.add_generation_prompt = conversation["add_generation_prompt"];
      if (conversation.contains("tools")) {
        options.tools_json = cases["tool_sets"][conversation["tools"].get<std::string>()].dump();
      }
      const auto messages = engine_messages(conversation["messages"]);
      EXPECT_EQ(engine::apply_chat_template(*model, messages, options),
                want["output"].get<std::string>());
      ++compared;
    }
    std::filesystem::remove(path);
  }
  EXPECT_EQ(compared, 5);
}

}  // namespace
}  // namespace rbee::tmpl
