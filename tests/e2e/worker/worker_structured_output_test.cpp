// Structured outputs on a real worker: a request with a JSON-schema constraint yields a
// document that parses and validates (checked here by hand, independently of the grammar
// code), ends with the document, and the same request without the constraint does not.
#include <set>

#include "worker_fixture.h"

namespace rbee::e2e::worker_test {
namespace {

class WorkerStructuredOutput : public ::testing::Test {
 protected:
  void SetUp() override { ignore_sigpipe(); }
  temp_home home_;
};

const json person_schema = json::parse(R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 12},
    "age": {"type": "integer"},
    "mood": {"enum": ["happy", "sad"]},
    "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
    "pet": {"type": ["string", "null"], "maxLength": 5}
  },
  "required": ["name", "age", "mood", "tags", "pet"],
  "additionalProperties": false
})");

size_t utf8_characters(const std::string& s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// person_schema's rules, written out: an empty string when `doc` validates.
std::string person_violation(const json& doc) {
  if (!doc.is_object()) return "not an object";
  const std::set<std::string> keys = {"name", "age", "mood", "tags", "pet"};
  for (const auto& [key, _] : doc.items())
    if (!keys.contains(key)) return "extra property " + key;
  for (const auto& key : keys)
    if (!doc.contains(key)) return "missing " + key;
  if (!doc["name"].is_string() || utf8_characters(doc["name"].get<std::string>()) > 12)
    return "bad name";
  if (!doc["age"].is_number_integer()) return "bad age";
  if (doc["mood"] != "happy" && doc["mood"] != "sad") return "bad mood";
  if (!doc["tags"].is_array() || doc["tags"].size() > 3) return "bad tags";
  for (const auto& t : doc["tags"])
    if (!t.is_boolean()) return "bad tag";
  const json& pet = doc["pet"];
  if (!pet.is_null() && !(pet.is_string() && utf8_characters(pet.get<std::string>()) <= 5))
    return "bad pet";
  return "";
}

json sampled(int seed) {
  return {{"prompt", "Once upon a time"},
          {"max_tokens", 600},
          {"temperature", 1.0},
          {"top_k", 0},
          {"top_p", 1.0},
          {"min_p", 0.0},
          {"seed", seed}};
}

TEST_F(WorkerStructuredOutput, JsonSchemaOutputValidatesAndEndsWithTheDocument) {
  // Random weights: without the constraint the text is never JSON.
  worker_process worker(home_, {"--model", synth_tiny, "--slots", "1", "--ctx", "1024"});
  worker.wait_ready();
  auto client = worker.client();
  for (int seed = 1; seed <= 4; ++seed) {
    json body = sampled(seed);
    body["constraint"] = {{"type", "json_schema"}, {"schema", person_schema}};
    stream_result r = infer(client, body);
    ASSERT_EQ(r.status, 200) << r.error.body;
    ASSERT_EQ(r.end.value("type", ""), "end") << r.end.dump();
    EXPECT_EQ(r.end.value("stop_reason", ""), "eos") << r.text;
    const json doc = json::parse(r.text, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(doc.is_discarded()) << "not JSON: " << r.text;
    EXPECT_EQ(person_violation(doc), "") << r.text;

    stream_result free = infer(client, sampled(seed));
    ASSERT_EQ(free.status, 200) << free.error.body;
    EXPECT_TRUE(json::parse(free.text, nullptr, false).is_discarded()) << free.text;
  }
}

TEST_F(WorkerStructuredOutput, JsonObjectOnATrainedModel) {
  worker_process worker(home_, {"--model", stories, "--slots", "1"});
  worker.wait_ready();
  auto client = worker.client();
  json body = greedy("Once upon a time", 300);
  body["constraint"] = {{"type", "json_object"}};
  stream_result r = infer(client, body);
  ASSERT_EQ(r.status, 200) << r.error.body;
  ASSERT_EQ(r.end.value("type", ""), "end") << r.end.dump();
  if (r.end.value("stop_reason", "") == "eos") {
    const json doc = json::parse(r.text, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << r.text;
    EXPECT_TRUE(doc.is_object()) << r.text;
  } else {
    // Cut by max_tokens inside an unbounded string: still a prefix of an object.
    EXPECT_EQ(r.end.value("stop_reason", ""), "max_tokens");
    EXPECT_EQ(r.text.substr(0, 1), "{") << r.text;
  }
}

TEST_F(WorkerStructuredOutput, UnsupportedSchemaKeywordIsA400NamingIt) {
  worker_process worker(home_, {"--model", stories, "--slots", "1"});
  worker.wait_ready();
  auto client = worker.client();
  json body = greedy("Once upon a time", 10);
  body["constraint"] = {{"type", "json_schema"},
                        {"schema", {{"type", "string"}, {"pattern", "^a+$"}}}};
  stream_result r = infer(client, body);
  EXPECT_EQ(r.status, 400);
  const json error = json::parse(r.error.body).at("error");
  EXPECT_EQ(error.value("code", ""), "INVALID_REQUEST");
  EXPECT_EQ(error["details"].value("field", ""), "constraint.schema");
  EXPECT_EQ(error["details"].value("keyword", ""), "pattern");
}

}  // namespace
}  // namespace rbee::e2e::worker_test
