// The Jinja engine against Python's Jinja2: every expected string below is what jinja2 3.1 renders
// for the same template and context in Hugging Face's environment (trim_blocks, lstrip_blocks,
// loopcontrols, HF's tojson, strftime_now pinned to 2025-03-14 09:26:53).
#include "template/template.h"

#include <gtest/gtest.h>

#include <string>

namespace rbee::tmpl {
namespace {

using json = nlohmann::ordered_json;

render_options pinned_options() {
  render_options options;
  options.now = [] {
    std::tm tm{};
    tm.tm_year = 2025 - 1900;
    tm.tm_mon = 2;
    tm.tm_mday = 14;
    tm.tm_hour = 9;
    tm.tm_min = 26;
    tm.tm_sec = 53;
    return tm;
  };
  return options;
}

std::string render(std::string_view source, const json& context = json::object(),
                   const render_options& options = pinned_options()) {
  return chat_template_program::parse(source).render(context, options);
}

struct jinja_case {
  const char* source;
  const char* context;
  const char* expected;
};

const jinja_case jinja2_cases[] = {
    {"{{ 1 + 2 }}|{{ 7 / 2 }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 1.0 }}|{{ 0.0001 }}|{{ "
     "1e16 }}|{{ 0.1 + 0.2 }}",
     R"J({})J", "3|3.5|3|2|1024|1.0|0.0001|1e+16|0.30000000000000004"},
    {"{{ none }}|{{ true }}|{{ [1, 'a', none, {'k': 'v'}] }}|{{ (1,) }}|{{ {'a': \"it's\"} }}",
     R"J({})J", "None|True|[1, 'a', None, {'k': 'v'}]|(1,)|{'a': \"it's\"}"},
    {"{{ 'a' ~ 1 ~ none ~ u }}|{{ 'ab' * 3 }}|{{ 1 + true }}|{{ 1 == 1.0 }}|{{ 1 < 2 < 3 }}",
     R"J({})J", "a1None|ababab|2|True|True"},
    {"{{ 'abc' in 'xabcx' }}|{{ 'a' not in ['a'] }}|{{ 'k' in d }}|{{ 'z' in u }}",
     R"J({"d": {"k": 1}})J", "True|False|True|False"},
    {"{{ x[:-1] }}|{{ x[1:] }}|{{ x[::-1] }}|{{ x[-1] }}|{{ l[1:] }}|{{ l[::2] }}|{{ l[5] }}|{{ "
     "'héllo'[1:3] }}",
     R"J({"x": "abcdef", "l": [1, 2, 3]})J", "abcde|bcdef|fedcba|f|[2, 3]|[1, 3]||él"},
    {"{{ u is defined }}|{{ u is undefined }}|{{ n is none }}|{{ n is defined }}|{{ u is iterable "
     "}}|{{ 5 is sequence }}|{{ d is mapping }}|{{ true is number }}|{{ true is integer }}|{{ 1.5 "
     "is float }}|{{ 'x' is string }}|{{ false is boolean }}|{{ true is true }}|{{ 5 is "
     "divisibleby 5 }}|{{ 'x' is eq 'x' }}|{{ 2 is equalto 3 }}|{{ 3 is odd }}|{{ 'x' is not none "
     "}}",
     R"J({"n": null, "d": {}})J",
     "False|True|True|True|True|False|True|True|False|True|True|True|True|True|True|False|True|"
     "True"},
    {"{{ ' a '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '..a'.lstrip('.') }}|{{ 'a\\n\\n'.rstrip() "
     "}}|{{ 'a b  c'.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'Hello "
     "wORLD'.title() }}|{{ 'hELLO'.capitalize() }}|{{ 'aXa'.replace('a', 'b') }}|{{ 'ab'.upper() "
     "}}{{ 'AB'.lower() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ ', "
     "'.join(['a', 'b']) }}|{{ 'héllo'.find('l') }}",
     R"J({})J",
     "a|a|a|a|['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b,c']|Hello "
     "World|Hello|bXb|ABab|TrueTrue|a, b|2"},
    {"{{ 'hello-world foo'|title }}|{{ 'hELLO'|capitalize }}|{{ ' x '|trim }}|{{ 'héllo'|length "
     "}}|{{ [1, 2]|count }}|{{ u|length }}|{{ 'a'|upper }}{{ 'B'|lower }}",
     R"J({})J", "Hello-World Foo|Hello|x|5|2|0|Ab"},
    {"{{ 3.7|int }} {{ '42'|int }} {{ 'x'|int }} {{ '3.7'|int }} {{ 2|float }} {{ 2.5|round }} {{ "
     "3.14159|round(2) }} {{ 3.2|round(method='ceil') }} {{ -3|abs }} {{ [1, 2]|sum }} {{ [3, "
     "1]|min }} {{ ['b', 'A']|max }} {{ 'abc'|list }}",
     R"J({})J", "3 42 0 3 2.0 2.0 3.14 4.0 3 3 1 b ['a', 'b', 'c']"},
    {"{{ {'b': 1, 'a': 2}|dictsort }} {{ ['A', 'a', 'b']|unique|list }} {{ ['a', 'b']|join(', ') "
     "}} {{ [3, 1, 2]|sort }} {{ [1, 2]|reverse|list }} {{ [1, 2]|first }}{{ [1, 2]|last }} {{ "
     "d|items|list }}",
     R"J({"d": {"a": 1}})J", "[('a', 2), ('b', 1)] ['A', 'b'] a, b [1, 2, 3] [2, 1] 12 [('a', 1)]"},
    {"{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(width='> "
     "', blank=true) }}",
     R"J({})J", "a\n  b\n\n  c|  a\n  b|a\n> \n> b"},
    {"{{ x|map(attribute='n')|list }} {{ x|selectattr('n', 'equalto', 1)|list }} {{ "
     "x|rejectattr('n')|list }} {{ [1, 2, 3]|select('odd')|list }} {{ [1, 2, 3]|reject('odd')|list "
     "}} {{ ['a', 'b']|map('upper')|join }} {{ x|selectattr('n')|map(attribute='n')|first }}",
     R"J({"x": [{"n": 1}, {"n": 0}]})J", "[1, 0] [{'n': 1}] [{'n': 0}] [1, 3] [2] AB 1"},
    {"{{ u|default('d') }}|{{ ''|default('d') }}|{{ ''|default('d', true) }}|{{ n|default('d') "
     "}}|{{ u|d('x') }}",
     R"J({"n": null})J", "d||d|None|x"},
    {"{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(separators=(',', ':')) }}|{{ "
     "d|tojson(sort_keys=true) }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ '\\u0001\\t<>'|tojson "
     "}}|{{ [] |tojson(indent=2) }}",
     R"J({"d": {"z": [1, 2, {"b": "é<"}], "c": 1.5, "n": null, "t": true, "e": {}}})J",
     "{\"z\": [1, 2, {\"b\": \"é<\"}], \"c\": 1.5, \"n\": null, \"t\": true, \"e\": {}}|{\n  "
     "\"z\": [\n    1,\n    2,\n    {\n      \"b\": \"é<\"\n    }\n  ],\n  \"c\": 1.5,\n  \"n\": "
     "null,\n  \"t\": true,\n  \"e\": "
     "{}\n}|{\"z\":[1,2,{\"b\":\"é<\"}],\"c\":1.5,\"n\":null,\"t\":true,\"e\":{}}|{\"c\": 1.5, "
     "\"e\": {}, \"n\": null, \"t\": true, \"z\": [1, 2, {\"b\": "
     "\"é<\"}]}|\"\\u00e9\"|\"\\u0001\\t<>\"|[]"},
    {"{{ d.get('a') }} {{ d.get('z', 'dflt') }} {{ d.get('z') }} {{ d.keys()|list }} {{ "
     "d.values()|list }} {{ d.items()|list }} {{ d['a'] }} {{ d.a }}",
     R"J({"d": {"a": 1}})J", "1 dflt None ['a'] [1] [('a', 1)] 1 1"},
    {"{% for a, b in d.items() %}{{ a }}={{ b }};{% else %}none{% endfor %}|{% for a in [] %}{{ a "
     "}}{% else %}none{% endfor %}|{% for c in 'ab' %}{{ c }}{% endfor %}|{% for k in d %}{{ k "
     "}}{% endfor %}|{% for x in u %}{{ x }}{% endfor %}",
     R"J({"d": {"x": 1, "y": 2}})J", "x=1;y=2;|none|ab|xy|"},
    {"{% for i in [1, 2, 3, 4] if i > 1 %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ "
     "loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.previtem "
     "}}/{{ loop.nextitem }}/{{ loop.cycle('a', 'b') }};{% endfor %}",
     R"J({})J", "1/0/3/3/2/True/False//3/a;2/1/3/2/1/False/False/2/4/b;3/2/3/1/0/False/True/3//a;"},
    {"{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% "
     "endif %}{{ i }}{% endfor %}|{{ range(3)|list }}|{{ range(1, 7, 2)|list }}|{{ range(3, 0, "
     "-1)|list }}",
     R"J({})J", "0134|[0, 1, 2]|[1, 3, 5]|[3, 2, 1]"},
    {"{% set ns = namespace(a=1, b='x') %}{% for i in [1, 2, 3] %}{% set ns.a = ns.a + i %}{% set "
     "ns.c = i %}{% endfor %}{{ ns.a }}{{ ns.b }}{{ ns.c }}",
     R"J({})J", "7x3"},
    {"{% for i in [1, 2] %}{% if i == 2 %}[{{ x }}]{% endif %}{% set x = i %}{% endfor %}[{{ x "
     "}}]{% set y = 5 %}{% for i in [1, 2] %}{{ y }}{% set y = i %}{% endfor %}[{{ y }}]{% if true "
     "%}{% set z = 3 %}{% endif %}{{ z }}",
     R"J({})J", "[][]55[5]3"},
    {"{% macro m(a, b='x') %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}{% set c = 1 %}{{ m(1) }}{{ m(2, "
     "b='y') }}{{ m(b='z', a=3) }}{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% "
     "endmacro %}{{ r(3) }}",
     R"J({})J", "[1x1][2y1][3z1]321"},
    {"{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = (1, 2) %}{{ t }}|{% set x %}  block {{ 1 "
     "}}\n{% endset %}[{{ x }}]|{{ 'yes' if t else 'no' }}|{{ 'a' if false }}|{{ u or 'fallback' "
     "}}|{{ 0 and 1 }}|{{ not u }}",
     R"J({})J", "12|(1, 2)|[  block 1\n]|yes||fallback|0|True"},
    {"  {% if true %}\n  x\n  {% endif %}\n  {# c #}\n  y\n{%- if true -%}\n  z  \n{%- endif "
     "%}\n{{ 'v' }}\n  w {%+ if true %}p{% endif +%}\nq\n",
     R"J({})J", "  x\n  yzv\n  w p\nq"},
    {"{{ strftime_now('%d %b %Y') }}|{{ 'a' 'b' }}|{{ \"\\x41\\u00e9\\n\" }}|{{ 1_000 }}",
     R"J({})J", "14 Mar 2025|ab|Aé\n|1000"},
    {"{{ x.y is defined }}|{{ x['y'] is defined }}|{{ n.y is defined }}|{{ 'abc'.content is "
     "defined }}|{{ l.0 }}",
     R"J({"x": {}, "n": null, "l": ["first"]})J", "False|False|False|False|first"},
    {"{{ [1, 2] + [3] }}|{{ {'a': 1} == {'a': 1} }}|{{ [1] == [1.0] }}|{{ 'b' > 'a' }}|{{ -(3) "
     "}}|{{ -x|abs }}",
     R"J({"x": 4})J", "[1, 2, 3]|True|True|True|-3|4"},
};

TEST(template_engine, renders_what_jinja2_renders) {
  for (const jinja_case& c : jinja2_cases) {
    SCOPED_TRACE(c.source);
    try {
      EXPECT_EQ(render(c.source, json::parse(c.context)), c.expected);
    } catch (const template_error& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

template_error error_of(std::string_view source, const json& context = json::object(),
                        const render_options& options = pinned_options()) {
  try {
    render(source, context, options);
  } catch (const template_error& e) {
    return e;
  }
  ADD_FAILURE() << "no error for: " << source;
  return template_error(template_error::kind::render, 0, "");
}

TEST(template_engine, syntax_errors_name_the_line) {
  for (const char* source :
       {"{% if x %}open", "{{ 1 + }}", "{% for %}", "{{ x | nosuchfilter }}", "{% unknowntag %}",
        "{{ 'unterminated }}", "{# open", "{{ x is nosuchtest }}", "{% endfor %}",
        "{% for x in y recursive %}{% endfor %}"}) {
    SCOPED_TRACE(source);
    const template_error e = error_of(source);
    EXPECT_EQ(e.what_kind, template_error::kind::syntax);
    EXPECT_EQ(e.line, 1);
  }
  const template_error e = error_of("line one\n{% if true %}\n{{ 1 +* 2 }}\n{% endif %}");
  EXPECT_EQ(e.line, 3);
  EXPECT_NE(std::string(e.what()).find("template line 3: "), std::string::npos) << e.what();
}

TEST(template_engine, raise_exception_is_a_clean_error_with_the_templates_message) {
  const template_error e = error_of(
      "ok\n{% if messages[0].role == 'system' %}{{ raise_exception('System role not "
      "supported') }}{% endif %}",
      json{{"messages", {{{"role", "system"}}}}});
  EXPECT_EQ(e.what_kind, template_error::kind::raised);
  EXPECT_EQ(e.line, 2);
  EXPECT_EQ(std::string(e.what()), "template line 2: System role not supported");
}

TEST(template_engine, undefined_behaves_as_jinjas_default_undefined) {
  EXPECT_EQ(render("[{{ u }}][{{ u|length }}][{{ u is defined }}][{% for x in u %}x{% endfor %}]"),
            "[][0][False][]");
  for (const char* source : {"{{ u.attr }}", "{{ u['key'] }}", "{{ u + 1 }}", "{{ d.missing.x }}",
                             "{{ u() }}", "{{ 'a' < u }}"}) {
    SCOPED_TRACE(source);
    const template_error e = error_of(source, json{{"d", json::object()}});
    EXPECT_EQ(e.what_kind, template_error::kind::render);
  }
  EXPECT_NE(std::string(error_of("{{ d.missing.x }}", json{{"d", json::object()}}).what())
                .find("'dict object' has no attribute 'missing'"),
            std::string::npos);
}

TEST(template_engine, render_errors_for_wrong_types) {
  for (const char* source :
       {"{{ 'a' + 1 }}", "{{ 1 / 0 }}", "{{ none|abs }}", "{{ 5|join }}", "{% set x.y = 1 %}",
        "{% for a, b in [1] %}{% endfor %}", "{{ 9223372036854775807 + 1 }}", "{{ [1][::0] }}"}) {
    SCOPED_TRACE(source);
    EXPECT_EQ(error_of(source, json{{"x", 1}}).what_kind, template_error::kind::render);
  }
}

// A template from a model file is untrusted: nothing it does may hang, crash or exhaust memory.
TEST(template_engine, hostile_templates_hit_limits_instead_of_resources) {
  render_options small = pinned_options();
  small.limits.max_output_bytes = 1 << 16;
  small.limits.max_steps = 100000;
  small.limits.max_bytes_built = 1 << 20;
  const char* hostile[] = {
      "{% for i in range(1000000) %}x{% endfor %}",                                        // output
      "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",  // steps
      "{{ 'x' * 1000000000 }}",  // one huge string
      "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
      "{% endfor %}",                                     // doubling
      "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",  // recursion
      "{% set ns = namespace(l=[]) %}{% for i in range(5000) %}{% set ns.l = [ns.l] %}"
      "{% endfor %}",  // nesting
  };
  for (const char* source : hostile) {
    SCOPED_TRACE(source);
    const template_error e = error_of(source, json::object(), small);
    EXPECT_TRUE(e.what_kind == template_error::kind::limit ||
                e.what_kind == template_error::kind::render)
        << e.what();
  }
  // Deep nesting in the template text itself is refused by the parser, not the stack.
  const std::string deep =
      "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  EXPECT_EQ(error_of(deep).what_kind, template_error::kind::syntax);
  // A namespace holding itself neither loops nor leaks (checked under the sanitizers).
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me is defined }}"),
            "True");
}

TEST(template_engine, strftime_now_uses_the_clock_given) {
  EXPECT_EQ(render("{{ strftime_now('%Y-%m-%d %H:%M') }}"), "2025-03-14 09:26");
}

}  // namespace
}  // namespace rbee::tmpl
