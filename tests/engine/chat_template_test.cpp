// Chat templates: family detection from real tokenizer.chat_template texts, the family renderer
// that matches what those Jinja templates produce (expected strings worked out from the
// templates), and render_chat_template's choice between the Jinja engine and that renderer.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/chat_template.h"
#include "engine/vocab.h"
#include "gguf/gguf.h"

namespace rbee::engine {
namespace {

// ---- real templates (as shipped in the models' tokenizer_config.json / GGUF) ----

const char* const llama2_template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] "
    "== 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != "
    "false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
    "message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% "
    "endfor %}";

const char* const llama3_template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif "
    "%}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// Llama 3.1 Instruct (tool branches shortened; the system header lines are verbatim).
const char* const llama31_template =
    "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- "
    "endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = "
    "true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 "
    "Jul 2024\" %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- "
    "endif %}\n\n{#- This block extracts the system message, so we can slot it into the right "
    "place. #}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = "
    "messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- "
    "set system_message = \"\" %}\n{%- endif %}\n\n{#- System message + builtin tools #}\n{{- "
    "\"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if builtin_tools is defined or "
    "tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n{%- endif %}\n{{- \"Cutting "
    "Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" "
    "}}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n    {%- if "
    "not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n    "
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
    "message['content'] | trim + '<|eot_id|>' }}\n    {%- endif %}\n{%- endfor %}\n{%- if "
    "add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' "
    "}}\n{%- "
    "endif %}\n";

const char* const chatml_template =  // teknium/OpenHermes-2.5-Mistral-7B
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' "
    "}}{% endif %}";

const char* const qwen2_template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif "
    "%}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const char* const mistral_template =  // Mistral-7B-Instruct-v0.2
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] "
    "' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
    "message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";

const char* const zephyr_template =  // TinyLlama-1.1B-Chat-v1.0 / zephyr-7b-beta
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' "
    "+ message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
    "'<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
    "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

const char* const phi3_template =  // Phi-3-mini-4k-instruct
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' "
    "%}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

const char* const gemma_template =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') "
    "%}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ "
    "'<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor "
    "%}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

const std::vector<chat_message> conversation = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
};
const std::vector<chat_message> no_system = {
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
};

std::string render(const char* tmpl, const std::vector<chat_message>& messages, bool prompt,
                   const chat_special_texts& special) {
  return render_chat(detect_chat_template(tmpl), messages, prompt, special);
}

const chat_special_texts llama_texts{"<s>", "</s>"};

TEST(chat_template, detects_families_from_real_templates) {
  EXPECT_EQ(detect_chat_template(llama2_template).family, chat_family::llama2);
  EXPECT_EQ(detect_chat_template(llama3_template).family, chat_family::llama3);
  EXPECT_EQ(detect_chat_template(llama31_template).family, chat_family::llama3);
  EXPECT_EQ(detect_chat_template(chatml_template).family, chat_family::chatml);
  EXPECT_EQ(detect_chat_template(qwen2_template).family, chat_family::chatml);
  EXPECT_EQ(detect_chat_template(mistral_template).family, chat_family::mistral);
  EXPECT_EQ(detect_chat_template(zephyr_template).family, chat_family::zephyr);
  EXPECT_EQ(detect_chat_template(phi3_template).family, chat_family::phi3);

  EXPECT_EQ(detect_chat_template(chatml_template).default_system, "");
  EXPECT_EQ(detect_chat_template(qwen2_template).default_system, "You are a helpful assistant.");
  EXPECT_EQ(detect_chat_template(llama3_template).llama3_date, "");
  EXPECT_EQ(detect_chat_template(llama31_template).llama3_date, "26 Jul 2024");
}

TEST(chat_template, unknown_or_missing_template_is_an_error_naming_the_override) {
  for (const char* tmpl : {gemma_template, "", "   \n", "{{ messages }}"}) {
    try {
      detect_chat_template(tmpl);
      ADD_FAILURE() << "no error for: " << tmpl;
    } catch (const engine_error& e) {
      EXPECT_EQ(e.code, error_code::chat_template_unknown);
      EXPECT_NE(std::string(e.what()).find("override"), std::string::npos) << e.what();
    }
  }
  try {
    chat_template_from_name("gemma");
    ADD_FAILURE() << "no error for override 'gemma'";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::chat_template_unknown);
    EXPECT_NE(std::string(e.what()).find("gemma"), std::string::npos) << e.what();
  }
}

TEST(chat_template, override_names) {
  for (const char* name : {"llama2", "llama3", "chatml", "mistral", "zephyr", "phi3"}) {
    const chat_template t = chat_template_from_name(name);
    EXPECT_EQ(to_string(t.family), name);
  }
  EXPECT_EQ(chat_template_from_name("qwen").family, chat_family::chatml);
  EXPECT_EQ(chat_template_from_name("tinyllama").family, chat_family::zephyr);
}

TEST(chat_template, llama2) {
  EXPECT_EQ(render(llama2_template, conversation, true, llama_texts),
            "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there "
            "</s><s>[INST] Who are you [/INST]");
  EXPECT_EQ(render(llama2_template, {{"user", "  padded  "}}, true, llama_texts),
            "<s>[INST] padded [/INST]");
}

TEST(chat_template, llama3) {
  const chat_special_texts texts{"<|begin_of_text|>", "<|end_of_text|>"};
  EXPECT_EQ(render(llama3_template, conversation, true, texts),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
            "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_"
            "header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|"
            "end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
            "\n\n");
  EXPECT_EQ(render(llama3_template, {{"user", " Hi \n"}}, false, texts),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(chat_template, llama31_always_has_the_dated_system_turn) {
  const chat_special_texts texts{"<|begin_of_text|>", "<|eot_id|>"};
  EXPECT_EQ(render(llama31_template, {{"user", "Hello"}}, true, texts),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
            "Date: December 2023\nToday Date: 26 Jul "
            "2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_"
            "header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render(llama31_template, {{"system", "Be brief."}, {"user", "Hello"}}, false, texts),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
            "Date: December 2023\nToday Date: 26 Jul 2024\n\nBe "
            "brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>");
}

TEST(chat_template, chatml_and_qwen2) {
  EXPECT_EQ(render(chatml_template, conversation, true, {}),
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|"
            "im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are "
            "you<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render(chatml_template, {{"user", "Hello"}}, false, {}),
            "<|im_start|>user\nHello<|im_end|>\n");
  // Qwen2 supplies its own system prompt when the conversation has none...
  EXPECT_EQ(render(qwen2_template, {{"user", "Hello"}}, true, {}),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|"
            "im_end|>\n<|im_start|>assistant\n");
  // ...and keeps the caller's otherwise; other roles print their name.
  EXPECT_EQ(render(qwen2_template, {{"system", "S"}, {"tool", "42"}}, false, {}),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>tool\n42<|im_end|>\n");
}

TEST(chat_template, mistral) {
  EXPECT_EQ(render(mistral_template, no_system, true, llama_texts),
            "<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]");
  // The template has no system role: the system prompt leads the first user message.
  EXPECT_EQ(render(mistral_template, conversation, true, llama_texts),
            "<s>[INST] You are a helpful assistant\n\nHello [/INST]Hi there</s>[INST] Who are you "
            "[/INST]");
}

TEST(chat_template, zephyr_tinyllama) {
  EXPECT_EQ(render(zephyr_template, conversation, true, llama_texts),
            "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi "
            "there</s>\n<|user|>\nWho are you</s>\n<|assistant|>\n");
  EXPECT_EQ(render(zephyr_template, {{"user", "Hello"}}, false, llama_texts),
            "<|user|>\nHello</s>\n");
}

TEST(chat_template, phi3) {
  const chat_special_texts texts{"<s>", "<|endoftext|>"};
  EXPECT_EQ(render(phi3_template, conversation, true, texts),
            "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>"
            "\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n");
  EXPECT_EQ(render(phi3_template, {{"user", "Hello"}}, false, texts),
            "<|user|>\nHello<|end|>\n<|endoftext|>");
}

TEST(chat_template, unsupported_role_is_invalid_argument) {
  for (const char* tmpl : {llama2_template, mistral_template, zephyr_template, phi3_template}) {
    try {
      render(tmpl, {{"tool", "42"}}, true, llama_texts);
      ADD_FAILURE() << "no error for " << tmpl;
    } catch (const engine_error& e) {
      EXPECT_EQ(e.code, error_code::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("tool"), std::string::npos) << e.what();
    }
  }
}

// With a real vocabulary: BOS/EOS texts come from it and the rendered special tokens come back
// as single ids when tokenized with parse_special.
TEST(chat_template, renders_with_vocab_texts_and_tokenizes_to_special_ids) {
  const vocab v =
      vocab::from_gguf(gguf::file::open(std::string(RBEE_SHARED_MODELS_DIR) + "/stories260K.gguf"));
  const auto options = [](bool prompt, std::string override_name = {}) {
    return chat_render_options{
        .add_generation_prompt = prompt, .tools_json = {}, .template_override = override_name};
  };
  const std::string text = render_chat_template(v, "", no_system, options(true, "llama2"));
  EXPECT_EQ(text, "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you [/INST]");
  const auto ids = v.tokenize(text, /*add_bos=*/false, /*parse_special=*/true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), v.bos());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), v.bos()), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), v.eos()), 1);

  const std::vector<chat_message> hi = {{"user", "Hi"}};
  EXPECT_EQ(render_chat_template(v, zephyr_template, hi, options(true)),
            "<|user|>\nHi</s>\n<|assistant|>\n");
  // No template in the model: ChatML, as llama.cpp's server does.
  EXPECT_EQ(render_chat_template(v, "", hi, options(true)),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// The model's template runs in the Jinja engine, so a template of no known family renders too
// (Gemma's used to be refused as unrecognised), and the template's own checks reach the caller.
TEST(chat_template, model_templates_run_in_the_jinja_engine) {
  const vocab v =
      vocab::from_gguf(gguf::file::open(std::string(RBEE_SHARED_MODELS_DIR) + "/stories260K.gguf"));
  const chat_render_options prompt{};
  EXPECT_EQ(render_chat_template(v, gemma_template, no_system, prompt),
            "<s><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi "
            "there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>"
            "model\n");
  try {
    render_chat_template(v, gemma_template, conversation, prompt);
    ADD_FAILURE() << "Gemma's template refuses a system message";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("System role not supported"), std::string::npos)
        << e.what();
  }
  // The override still selects the family renderer.
  const std::vector<chat_message> hi = {{"user", "Hi"}};
  EXPECT_EQ(render_chat_template(v, gemma_template, hi,
                                 chat_render_options{.add_generation_prompt = true,
                                                     .tools_json = {},
                                                     .template_override = "chatml"}),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(chat_template, jinja_the_engine_cannot_parse_falls_back_to_the_family_or_is_unknown) {
  const vocab v =
      vocab::from_gguf(gguf::file::open(std::string(RBEE_SHARED_MODELS_DIR) + "/stories260K.gguf"));
  const std::vector<chat_message> hi = {{"user", "Hi"}};
  // {% filter %} blocks are outside the supported subset; the ChatML markers identify the family.
  EXPECT_EQ(render_chat_template(v, "{% filter trim %}<|im_start|>{% endfilter %}", hi, {}),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  try {
    render_chat_template(v, "{% filter upper %}{{ messages }}{% endfilter %}", hi, {});
    ADD_FAILURE() << "no error for an unparseable template of no known family";
  } catch (const engine_error& e) {
    EXPECT_EQ(e.code, error_code::chat_template_unknown);
    EXPECT_NE(std::string(e.what()).find("filter"), std::string::npos) << e.what();
  }
}

// Tool calls and results reach the template as transformers passes them: arguments given as
// JSON text arrive as the object, tools as a list, and tool messages keep their call id.
TEST(chat_template, tool_calls_and_tools_reach_the_template) {
  const vocab v =
      vocab::from_gguf(gguf::file::open(std::string(RBEE_SHARED_MODELS_DIR) + "/stories260K.gguf"));
  const char* probe =
      "{% for m in messages %}{{ m.role }}:{{ m.content }}"
      "{% if m.tool_calls %}{% for c in m.tool_calls %}[{{ c.id }} {{ c.function.name }} "
      "{{ c.function.arguments is mapping }} {{ c.function.arguments | tojson }}]{% endfor %}"
      "{% endif %}{% if m.tool_call_id is defined %}({{ m.tool_call_id }} {{ m.name }}){% endif %}"
      ";{% endfor %}{{ tools | map(attribute='function') | map(attribute='name') | join(',') }}"
      "|{{ tools is none }}";
  chat_message call{"assistant", ""};
  call.tool_calls_json =
      R"([{"id":"c1","type":"function","function":{"name":"get_weather",)"
      R"("arguments":"{\"city\": \"Z\u00fcrich\"}"}},)"
      R"({"id":"c2","type":"function","function":{"name":"f","arguments":"not json"}}])";
  std::vector<chat_message> messages = {{"user", "weather?"}, call};
  chat_message result{"tool", "sunny"};
  result.tool_call_id = "c1";
  result.name = "get_weather";
  messages.push_back(result);
  chat_render_options options;
  options.tools_json = R"([{"type":"function","function":{"name":"get_weather"}}])";
  EXPECT_EQ(render_chat_template(v, probe, messages, options),
            "user:weather?;assistant:[c1 get_weather True {\"city\": \"Zürich\"}][c2 f False "
            "\"not json\"];tool:sunny(c1 get_weather);get_weather|False");
  options.tools_json.clear();
  EXPECT_EQ(render_chat_template(v, "{{ tools is none }}", messages, options), "True");
  for (const char* bad : {"{", R"({"not": "a list"})"}) {
    options.tools_json = bad;
    EXPECT_THROW(render_chat_template(v, "x", messages, options), engine_error);
  }
}

}  // namespace
}  // namespace rbee::engine
