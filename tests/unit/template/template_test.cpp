// The Jinja engine against what Python's Jinja2 renders for the same template (expected
// strings checked with jinja2 3.1 under HF's settings: trim_blocks, lstrip_blocks).
#include "template/template.h"

#include <gtest/gtest.h>

namespace rbee::tmpl {
namespace {

using json = nlohmann::ordered_json;

std::string render(std::string_view source, const json& context = json::object(),
                   const render_options& options = {}) {
  return chat_template_program::parse(source).render(context, options);
}

TEST(template_engine, smoke) {
  EXPECT_EQ(render("a{{ 1 + 2 }}b"), "a3b");
}

}  // namespace
}  // namespace rbee::tmpl
