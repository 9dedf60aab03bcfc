#include "hive/model_ref.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::hive {
namespace {

// The 400 a malformed reference gets, with the field it names.
common::http_error rejection(std::string_view text) {
  try {
    parse_model_ref(text);
  } catch (const common::http_error& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << text;
  return common::http_error(0, "", "");
}

TEST(ModelRef, ParsesHubFileWithNestedPath) {
  auto r = parse_model_ref("hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:q4/tinyllama.Q4_K_M.gguf");
  EXPECT_EQ(r.kind, ref_kind::hf_file);
  EXPECT_EQ(r.org, "TheBloke");
  EXPECT_EQ(r.repo, "TinyLlama-1.1B-Chat-v1.0-GGUF");
  EXPECT_EQ(r.file, "q4/tinyllama.Q4_K_M.gguf");
  EXPECT_EQ(r.canonical(), "hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:q4/tinyllama.Q4_K_M.gguf");
  EXPECT_EQ(r.relative_store_path(),
            "hf/TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/q4/tinyllama.Q4_K_M.gguf");
}

TEST(ModelRef, ParsesHubRepoLocalFileAndAlias) {
  auto repo = parse_model_ref("hf:Qwen/Qwen2-0.5B-Instruct-GGUF");
  EXPECT_EQ(repo.kind, ref_kind::hf_repo);
  EXPECT_EQ(repo.canonical(), "hf:Qwen/Qwen2-0.5B-Instruct-GGUF");

  auto file = parse_model_ref("file:/models/./x/stories.gguf");
  EXPECT_EQ(file.kind, ref_kind::local_file);
  EXPECT_EQ(file.path, "/models/x/stories.gguf");
  EXPECT_EQ(file.canonical(), "file:/models/x/stories.gguf");

  auto alias = parse_model_ref("tinyllama-q4_k_m");
  EXPECT_EQ(alias.kind, ref_kind::alias);
  EXPECT_EQ(alias.canonical(), "tinyllama-q4_k_m");
}

TEST(ModelRef, RejectsMalformedReferencesWithTheFieldNamed) {
  for (std::string_view bad : {"",
                               "hf:",
                               "hf:org",
                               "hf:org/",
                               "hf:/repo",
                               "hf:org/repo/extra",
                               "hf:../repo",
                               "hf:org/..:x.gguf",
                               "hf:org/repo:",
                               "hf:org/repo:../../etc/passwd.gguf",
                               "hf:org/repo:/abs.gguf",
                               "hf:org/repo:a//b.gguf",
                               "hf:org/repo:model.bin",
                               "https://huggingface.co/org/repo",
                               "http://evil/x.gguf",
                               "file:relative.gguf",
                               "file:/models/../etc/x.gguf",
                               "file:/models/x.txt",
                               "../x",
                               "a/b",
                               "name with space",
                               "bad\nname",
                               "caf\xc3\xa9",
                               "hf:org/re$po"}) {
    auto e = rejection(bad);
    EXPECT_EQ(e.status, 400) << bad;
    EXPECT_EQ(e.code, "INVALID_REQUEST") << bad;
    EXPECT_EQ(e.details.value("field", ""), "model_ref") << bad;
  }
}

TEST(ModelRef, RejectsOverlongReferences) {
  auto e = rejection("hf:org/" + std::string(600, 'a'));
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("longer than"), std::string::npos);
}

TEST(ModelRef, QuantizationFromFileName) {
  EXPECT_EQ(quantization_from_name("tinyllama-1.1b.Q4_K_M.gguf"), "Q4_K_M");
  EXPECT_EQ(quantization_from_name("model-q8_0.gguf"), "Q8_0");
  EXPECT_EQ(quantization_from_name("synth-tiny-f16.gguf"), "F16");
  EXPECT_EQ(quantization_from_name("Q4_K_S-model.gguf"), "Q4_K_S");
  EXPECT_EQ(quantization_from_name("plain.gguf"), "");
  EXPECT_EQ(quantization_from_name("XQ4_0X.gguf"), "");
}

TEST(ModelRef, PicksGgufByPreference) {
  EXPECT_EQ(pick_gguf_file({"README.md", "m.Q8_0.gguf", "m.Q4_K_M.gguf", "m.Q5_K_M.gguf"}),
            "m.Q4_K_M.gguf");
  EXPECT_EQ(pick_gguf_file({"m.Q8_0.gguf", "m.Q5_K_M.gguf"}), "m.Q5_K_M.gguf");
  EXPECT_EQ(pick_gguf_file({"m.F16.gguf", "m.Q8_0.gguf"}), "m.Q8_0.gguf");
  EXPECT_EQ(pick_gguf_file({"m.Q4_0.gguf", "m.Q6_K.gguf"}), "m.Q4_0.gguf");
  // Unknown tags come after known ones; split shards are never picked.
  EXPECT_EQ(pick_gguf_file({"m.weird.gguf", "m.F32.gguf"}), "m.F32.gguf");
  EXPECT_EQ(pick_gguf_file({"m.weird.gguf"}), "m.weird.gguf");
  EXPECT_EQ(pick_gguf_file({"m.Q4_K_M-00001-of-00002.gguf", "m.Q8_0.gguf"}), "m.Q8_0.gguf");
  EXPECT_EQ(pick_gguf_file({"config.json", "model.safetensors"}), "");
}

TEST(ModelRef, SafeRepoFileIsOneRuleForTypedAndListedNames) {
  for (std::string_view ok : {"m.gguf", "q4/m.Q4_K_M.gguf", "a-b_c.d/e", ".gitattributes"}) {
    EXPECT_TRUE(is_safe_repo_file(ok)) << ok;
  }
  for (std::string_view bad :
       {"", "../x.gguf", "../../evil.gguf", "a/../../b.gguf", "/abs/x.gguf", "/tmp/x/evil.gguf",
        "a//b.gguf", "a/", "./a.gguf", "a/./b.gguf", "..", "a b.gguf", "a\\b.gguf", "a\nb.gguf",
        "x$(id).gguf", "~/x.gguf", "caf\xc3\xa9.gguf"}) {
    EXPECT_FALSE(is_safe_repo_file(bad)) << bad;
    // A user typing the same name gets the same verdict.
    EXPECT_THROW(parse_model_ref("hf:org/repo:" + std::string(bad)), common::http_error) << bad;
  }
  EXPECT_FALSE(is_safe_repo_file(std::string(513, 'a')));
  EXPECT_FALSE(is_safe_repo_file(std::string(129, 'a') + ".gguf"));
}

TEST(ModelRef, PickNeverChoosesANameThatIsNotASafeRepoPath) {
  // The listing comes from the network: a hostile hub's names must not become paths.
  EXPECT_EQ(
      pick_gguf_file({"../../../../evil.Q4_K_M.gguf", "/tmp/evil.Q4_K_M.gguf", "m.Q8_0.gguf"}),
      "m.Q8_0.gguf");
  EXPECT_EQ(pick_gguf_file({"../../evil.gguf", "/abs/evil.gguf", "a//b.gguf", "a b.gguf",
                            "q4/./m.gguf", "q4\\..\\m.gguf"}),
            "");
}

}  // namespace
}  // namespace rbee::hive
