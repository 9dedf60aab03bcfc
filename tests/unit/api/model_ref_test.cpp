#include "api/model_ref.h"

#include <gtest/gtest.h>

#include "common/errors.h"

namespace rbee::api {
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

TEST(ModelRef, ARepoReferenceIsSatisfiedByAnyFileOfThatRepo) {
  auto repo = parse_model_ref("hf:Qwen/Qwen2-0.5B-Instruct-GGUF");
  auto file = parse_model_ref("hf:Qwen/Qwen2-0.5B-Instruct-GGUF:qwen2-0_5b-instruct-q4_k_m.gguf");
  EXPECT_TRUE(repo.is_satisfied_by(file));
  EXPECT_TRUE(repo.is_satisfied_by(parse_model_ref("hf:qwen/qwen2-0.5b-instruct-gguf:m.gguf")));
  EXPECT_TRUE(file.is_satisfied_by(file));
  EXPECT_FALSE(file.is_satisfied_by(repo)) << "a file request needs that very file";
  EXPECT_FALSE(
      file.is_satisfied_by(parse_model_ref("hf:Qwen/Qwen2-0.5B-Instruct-GGUF:other.gguf")));
  EXPECT_FALSE(repo.is_satisfied_by(parse_model_ref("hf:Qwen/Qwen2-1.5B-Instruct-GGUF:m.gguf")));
  EXPECT_FALSE(repo.is_satisfied_by(parse_model_ref("file:/models/Qwen2-0.5B-Instruct-GGUF.gguf")));
  EXPECT_TRUE(
      parse_model_ref("file:/m/./a.gguf").is_satisfied_by(parse_model_ref("file:/m/a.gguf")));
  EXPECT_FALSE(parse_model_ref("tiny").is_satisfied_by(parse_model_ref("Tiny")));
}

TEST(ModelRef, ReferenceTextsAreComparedByTheOneRule) {
  EXPECT_TRUE(reference_satisfied_by("hf:Org/Repo", "hf:org/repo:m.Q4_K_M.gguf"));
  EXPECT_TRUE(reference_satisfied_by("tiny", "tiny"));
  EXPECT_FALSE(reference_satisfied_by("hf:org/repo:a.gguf", "hf:org/repo"));
  EXPECT_FALSE(reference_satisfied_by("hf:org/repo", "hf:../x"));
  EXPECT_FALSE(reference_satisfied_by("hf:../x", "hf:org/repo:a.gguf"));
}

TEST(ModelRef, TryParseGivesNothingForAMalformedStoredReference) {
  EXPECT_FALSE(try_parse_model_ref("hf:../x"));
  ASSERT_TRUE(try_parse_model_ref("hf:org/repo:m.gguf"));
  EXPECT_EQ(try_parse_model_ref("hf:org/repo:m.gguf")->kind, ref_kind::hf_file);
}

}  // namespace
}  // namespace rbee::api

namespace rbee::api {
namespace {

// A path or a repository typed without its scheme gets told which one to add.
TEST(ModelRef, APathOrRepoWithoutSchemeGetsAHint) {
  for (const auto& [typed, hint] : std::vector<std::pair<std::string, std::string>>{
           {"/models/stories260K.gguf", "file:/models/stories260K.gguf"},
           {"TheBloke/TinyLlama-GGUF", "hf:TheBloke/TinyLlama-GGUF"}}) {
    try {
      parse_model_ref(typed, "model");
      ADD_FAILURE() << typed << " was accepted";
    } catch (const common::http_error& e) {
      EXPECT_NE(std::string(e.what()).find(hint), std::string::npos) << e.what();
      EXPECT_EQ(e.details.value("field", ""), "model");
    }
  }
}

}  // namespace
}  // namespace rbee::api
