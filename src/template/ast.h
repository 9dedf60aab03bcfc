#pragma once
// The parsed form of a template: expressions and statements, as the parser builds them and the
// renderer walks them. Internal to the template library.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "template/template.h"
#include "template/value.h"

namespace rbee::tmpl::detail {

struct expr;
using expr_ptr = std::unique_ptr<expr>;
using named_exprs = std::vector<std::pair<std::string, expr_ptr>>;

struct expr {
  enum class kind {
    literal,    // value
    name,       // name
    list,       // args
    tuple,      // args
    dict,       // args: key, value, key, value, ...
    attribute,  // args[0].name
    subscript,  // args[0][args[1]]
    slice,      // args: start, stop, step (nullptr where left out)
    call,       // args[0](args[1..], named)
    filter,     // args[0] | name(args[1..], named)
    test,       // args[0] is [not] name(args[1..], named)
    negate,     // not args[0]
    unary,      // name ("-" or "+") args[0]
    binary,     // args[0] name args[1]: + - * / // % ** ~
    compare,    // args[0] ops[0] args[1] ops[1] args[2] ...
    logical_and,
    logical_or,
    conditional,  // args[1] if args[0] else args[2] (args[2] may be nullptr)
  };
  kind k;
  int line = 0;
  value literal;
  std::string name;
  std::vector<expr_ptr> args;
  named_exprs named;
  std::vector<std::string> ops;
  bool negated = false;  // `is not`
};

struct node;
using node_list = std::vector<node>;

struct node {
  enum class kind {
    text,       // text
    output,     // {{ value }}
    if_chain,   // branches: {condition or nullptr for else, body}
    for_loop,   // for targets in value [if condition]: body [else: else_body]
    set,        // set targets = value, or set value.attribute = ... (attribute non-empty)
    set_block,  // set targets[0] %} body {% endset
    macro,      // macro name(params) body
    loop_break,
    loop_continue,
  };
  explicit node(kind node_kind) : k(node_kind) {}
  kind k;
  int line = 0;
  std::string text;
  expr_ptr value;
  expr_ptr condition;
  std::vector<std::string> targets;
  std::string attribute;
  std::vector<std::pair<expr_ptr, node_list>> branches;
  node_list body;
  node_list else_body;
  named_exprs params;  // macro parameters with their defaults (nullptr: none)
};

struct program {
  node_list body;
};

// Parses a template; throws template_error(syntax).
program parse_template(std::string_view source);

bool is_known_filter(std::string_view name);
bool is_known_test(std::string_view name);

}  // namespace rbee::tmpl::detail
