// The renderer: walks the parsed template with Jinja's scoping (a for loop's body gets a fresh
// scope each iteration; if does not open one; macros see the scope they were defined in), under
// the limits of render_limits.
#include <array>

#include "template/ast.h"
#include "template/builtins.h"

namespace rbee::tmpl {

template_error::template_error(kind k, int line, const std::string& message)
    : std::runtime_error(line > 0 ? "template line " + std::to_string(line) + ": " + message
                                  : message),
      what_kind(k),
      line(line) {}

namespace detail {

namespace {

struct scope {
  explicit scope(std::shared_ptr<scope> parent_scope) : parent(std::move(parent_scope)) {}

  value* find(std::string_view name) {
    for (scope* s = this; s; s = s->parent.get()) {
      for (auto& [k, v] : s->vars) {
        if (k == name) return &v;
      }
    }
    return nullptr;
  }
  void set(const std::string& name, value v) {
    for (auto& [k, old] : vars) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }

  std::vector<std::pair<std::string, value>> vars;
  std::shared_ptr<scope> parent;
};
using scope_ptr = std::shared_ptr<scope>;

enum class flow { normal, break_loop, continue_loop };

std::tm local_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return tm;
}

class renderer final : public builtin_env {
 public:
  explicit renderer(const render_options& options) : options_(options) {}

  ~renderer() {
    // A namespace can hold itself (set ns.me = ns): empty them all so no cycle outlives us.
    for (const value& ns : namespaces_) ns.entries().clear();
  }

  std::string run(const program& p, const nlohmann::ordered_json& context) {
    auto globals = std::make_shared<scope>(nullptr);
    add_globals(*globals);
    auto top = std::make_shared<scope>(globals);
    if (context.is_object()) {
      for (const auto& [k, v] : context.items()) top->set(k, value::from_json(v));
    }
    std::string out;
    out_ = &out;
    if (exec(p.body, top) != flow::normal) fail("'break' or 'continue' outside a loop");
    return out;
  }

  int current_line() const override { return line_; }

  void charge(size_t n) override {
    bytes_built_ += n;
    if (bytes_built_ > options_.limits.max_bytes_built) {
      limit_error("the template builds more than " +
                  std::to_string(options_.limits.max_bytes_built) + " bytes of strings and lists");
    }
  }

  size_t max_string_bytes() const override { return options_.limits.max_output_bytes; }

 private:
  [[noreturn]] void limit_error(const std::string& message) {
    throw template_error(template_error::kind::limit, line_, message);
  }

  void step() {
    if (++steps_ > options_.limits.max_steps) {
      limit_error("the template runs longer than " + std::to_string(options_.limits.max_steps) +
                  " steps");
    }
  }

  void emit(std::string_view s) {
    if (out_->size() + s.size() > options_.limits.max_output_bytes) {
      limit_error("the output is larger than " + std::to_string(options_.limits.max_output_bytes) +
                  " bytes");
    }
    charge(s.size());
    out_->append(s);
  }

  // Renders `body` into a string of its own (macro calls, block set).
  std::string capture(const node_list& body, const scope_ptr& sc) {
    std::string captured;
    std::string* saved = out_;
    out_ = &captured;
    flow f;
    try {
      f = exec(body, sc);
    } catch (...) {
      out_ = saved;
      throw;
    }
    out_ = saved;
    if (f != flow::normal) fail("'break' or 'continue' outside a loop");
    return captured;
  }

  void add_globals(scope& globals) {
    globals.set("raise_exception", value::function([this](call_args& args) -> value {
                  const std::string message =
                      args.positional.empty() ? "" : args.positional[0].str();
                  throw template_error(template_error::kind::raised, line_, message);
                }));
    globals.set("strftime_now", value::function([this](call_args& args) -> value {
                  if (args.positional.empty() || !args.positional[0].is_string()) {
                    fail("strftime_now() needs a format string");
                  }
                  const std::tm tm = options_.now ? options_.now() : local_now();
                  std::array<char, 256> buf{};
                  const size_t n = std::strftime(buf.data(), buf.size(),
                                                 args.positional[0].as_string().c_str(), &tm);
                  return value(std::string(buf.data(), n));
                }));
    globals.set("namespace", value::function([this](call_args& args) -> value {
                  value_dict entries;
                  for (const value& v : args.positional) {
                    if (!v.is_dict()) fail("namespace() takes keyword arguments or a dict");
                    for (const auto& e : v.entries()) entries.push_back(e);
                  }
                  for (auto& [k, v] : args.named) entries.emplace_back(k, v);
                  value ns = value::dict(std::move(entries), /*is_namespace=*/true);
                  namespaces_.push_back(ns);
                  return ns;
                }));
    globals.set("dict", value::function([this](call_args& args) -> value {
                  if (!args.positional.empty()) fail("dict() takes keyword arguments only");
                  return value::dict(value_dict(args.named.begin(), args.named.end()));
                }));
    globals.set("range", value::function([this](call_args& args) -> value {
                  std::array<int64_t, 3> a{0, 0, 1};
                  const size_t n = args.positional.size();
                  if (n == 0 || n > 3) fail("range() takes 1 to 3 integers");
                  for (size_t i = 0; i < n; ++i) {
                    if (!args.positional[i].is_integer()) fail("range() takes integers");
                  }
                  if (n == 1) {
                    a[1] = args.positional[0].as_int();
                  } else {
                    a[0] = args.positional[0].as_int();
                    a[1] = args.positional[1].as_int();
                    if (n == 3) a[2] = args.positional[2].as_int();
                  }
                  if (a[2] == 0) fail("range() step must not be zero");
                  value_list items;
                  for (int64_t i = a[0]; a[2] > 0 ? i < a[1] : i > a[1]; i += a[2]) {
                    charge(element_cost);
                    items.emplace_back(i);
                  }
                  return value::list(std::move(items));
                }));
  }

  // ---- statements ----
  flow exec(const node_list& body, const scope_ptr& sc) {
    for (const node& n : body) {
      const flow f = exec_node(n, sc);
      if (f != flow::normal) return f;
    }
    return flow::normal;
  }

  flow exec_node(const node& n, const scope_ptr& sc) {
    line_ = n.line;
    switch (n.k) {
      case node::kind::text:
        emit(n.text);
        return flow::normal;
      case node::kind::output: {
        const value v = eval(*n.value, sc);
        line_ = n.line;
        emit(v.str());
        return flow::normal;
      }
      case node::kind::if_chain:
        for (const auto& [condition, branch] : n.branches) {
          if (!condition || eval(*condition, sc).truthy()) return exec(branch, sc);
        }
        return flow::normal;
      case node::kind::for_loop:
        exec_for(n, sc);
        return flow::normal;
      case node::kind::set:
        exec_set(n, sc);
        return flow::normal;
      case node::kind::set_block:
        sc->set(n.targets[0], value(capture(n.body, sc)));
        return flow::normal;
      case node::kind::macro:
        define_macro(n, sc);
        return flow::normal;
      case node::kind::loop_break:
        return flow::break_loop;
      case node::kind::loop_continue:
        return flow::continue_loop;
    }
    return flow::normal;
  }

  void bind_targets(scope& s, const std::vector<std::string>& targets, const value& v) {
    if (targets.size() == 1) {
      s.set(targets[0], v);
      return;
    }
    if (!v.is_list() || v.items().size() != targets.size()) {
      fail("cannot unpack " + v.type_name() + " into " + std::to_string(targets.size()) + " names");
    }
    for (size_t i = 0; i < targets.size(); ++i) s.set(targets[i], v.items()[i]);
  }

  void exec_for(const node& n, const scope_ptr& sc) {
    value_list items = iterate(eval(*n.value, sc), *this);
    if (n.condition) {
      value_list kept;
      for (value& item : items) {
        step();
        auto probe = std::make_shared<scope>(sc);
        bind_targets(*probe, n.targets, item);
        if (eval(*n.condition, probe).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      exec(n.else_body, std::make_shared<scope>(sc));
      return;
    }
    const auto length = int64_t(items.size());
    for (int64_t i = 0; i < length; ++i) {
      step();
      auto body_scope = std::make_shared<scope>(sc);
      bind_targets(*body_scope, n.targets, items[size_t(i)]);
      body_scope->set("loop", loop_object(items, i));
      line_ = n.line;
      if (exec(n.body, body_scope) == flow::break_loop) break;
    }
  }

  static value loop_object(const value_list& items, int64_t i) {
    const auto length = int64_t(items.size());
    value_dict loop = {
        {"index", value(i + 1)},
        {"index0", value(i)},
        {"revindex", value(length - i)},
        {"revindex0", value(length - i - 1)},
        {"first", value(i == 0)},
        {"last", value(i == length - 1)},
        {"length", value(length)},
        {"depth", value(1)},
        {"depth0", value(0)},
        {"previtem", i > 0 ? items[size_t(i - 1)] : value::undefined("there is no previous item")},
        {"nextitem",
         i + 1 < length ? items[size_t(i + 1)] : value::undefined("there is no next item")},
        {"cycle", value::function([i](call_args& args) -> value {
           if (args.positional.empty()) return value();
           return args.positional[size_t(i) % args.positional.size()];
         })},
    };
    return value::dict(std::move(loop));
  }

  void exec_set(const node& n, const scope_ptr& sc) {
    value v = eval(*n.value, sc);
    line_ = n.line;
    if (n.attribute.empty()) {
      bind_targets(*sc, n.targets, v);
      return;
    }
    value* target = sc->find(n.targets[0]);
    if (!target || !target->is_namespace()) {
      fail("cannot assign attribute on non-namespace object '" + n.targets[0] + "'");
    }
    if (value* slot = target->find(n.attribute)) {
      *slot = std::move(v);
    } else {
      target->entries().emplace_back(n.attribute, std::move(v));
    }
  }

  void define_macro(const node& n, const scope_ptr& sc) {
    // The macro sees the scope it was defined in; keep that scope alive for the render.
    retained_scopes_.push_back(sc);
    scope* defining = sc.get();
    const node* definition = &n;
    sc->set(n.text, value::function([this, defining, definition](call_args& args) -> value {
              return call_macro(*definition, *defining, args);
            }));
  }

  value call_macro(const node& n, scope& defining, call_args& args) {
    if (++depth_ > options_.limits.max_depth) {
      limit_error("macro calls nest deeper than " + std::to_string(options_.limits.max_depth));
    }
    struct depth_release {
      int& depth;
      ~depth_release() { --depth; }
    } release{depth_};
    if (args.positional.size() > n.params.size()) {
      fail("macro '" + n.text + "' takes " + std::to_string(n.params.size()) + " arguments");
    }
    // The defining scope is kept alive by retained_scopes_; borrow it without owning it.
    auto call_scope = std::make_shared<scope>(scope_ptr(scope_ptr{}, &defining));
    for (const auto& [name, v] : args.named) {
      bool known = false;
      for (const auto& p : n.params) known = known || p.first == name;
      if (!known) fail("macro '" + n.text + "' has no argument '" + name + "'");
    }
    for (size_t i = 0; i < n.params.size(); ++i) {
      const auto& [name, default_value] = n.params[i];
      value v;
      bool given = false;
      if (i < args.positional.size()) {
        v = args.positional[i];
        given = true;
      }
      for (const auto& [k, named_value] : args.named) {
        if (k == name) {
          v = named_value;
          given = true;
        }
      }
      if (!given) {
        v = default_value ? eval(*default_value, call_scope)
                          : value::undefined("'" + name + "' is undefined");
      }
      call_scope->set(name, std::move(v));
    }
    const int saved_line = line_;
    std::string text = capture(n.body, call_scope);
    line_ = saved_line;
    return value(std::move(text));
  }

  // ---- expressions ----
  call_args eval_args(const expr& e, size_t first, const scope_ptr& sc) {
    call_args args;
    for (size_t i = first; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i], sc));
    for (const auto& [name, arg] : e.named) args.named.emplace_back(name, eval(*arg, sc));
    return args;
  }

  value eval(const expr& e, const scope_ptr& sc) {
    step();
    line_ = e.line;
    switch (e.k) {
      case expr::kind::literal:
        return e.literal;
      case expr::kind::name: {
        if (value* v = sc->find(e.name)) return *v;
        return value::undefined("'" + e.name + "' is undefined");
      }
      case expr::kind::list:
      case expr::kind::tuple: {
        value_list items;
        for (const auto& a : e.args) items.push_back(eval(*a, sc));
        charge(items.size() * element_cost);
        return value::list(std::move(items), e.k == expr::kind::tuple);
      }
      case expr::kind::dict: {
        value_dict entries;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const value key = eval(*e.args[i], sc);
          if (!key.is_string()) fail("dict keys must be strings, got " + key.type_name());
          value v = eval(*e.args[i + 1], sc);
          bool replaced = false;
          for (auto& [k, old] : entries) {
            if (k == key.as_string()) {
              old = v;
              replaced = true;
            }
          }
          if (!replaced) entries.emplace_back(key.as_string(), std::move(v));
        }
        charge(entries.size() * element_cost);
        return value::dict(std::move(entries));
      }
      case expr::kind::attribute: {
        const value obj = eval(*e.args[0], sc);
        line_ = e.line;
        return get_attribute(obj, e.name, *this);
      }
      case expr::kind::subscript:
        return eval_subscript(e, sc);
      case expr::kind::slice:
        fail("a slice outside a subscript");
      case expr::kind::call: {
        const value callee = eval(*e.args[0], sc);
        call_args args = eval_args(e, 1, sc);
        line_ = e.line;
        if (callee.is_undefined()) fail(callee.undefined_reason());
        if (callee.type() != value::kind::function) fail(callee.type_name() + " is not callable");
        return callee.callable()(args);
      }
      case expr::kind::filter: {
        const value input = eval(*e.args[0], sc);
        call_args args = eval_args(e, 1, sc);
        line_ = e.line;
        return apply_filter(e.name, input, args, *this);
      }
      case expr::kind::test: {
        const value input = eval(*e.args[0], sc);
        call_args args = eval_args(e, 1, sc);
        line_ = e.line;
        return value(apply_test(e.name, input, args, *this) != e.negated);
      }
      case expr::kind::negate:
        return value(!eval(*e.args[0], sc).truthy());
      case expr::kind::unary: {
        const value v = eval(*e.args[0], sc);
        line_ = e.line;
        if (e.name == "+") {
          if (!v.is_numeric()) fail("bad operand type for unary +: " + v.type_name());
          return v;
        }
        return binary_operation("-", value(0), v, *this);
      }
      case expr::kind::binary: {
        const value a = eval(*e.args[0], sc);
        const value b = eval(*e.args[1], sc);
        line_ = e.line;
        return binary_operation(e.name, a, b, *this);
      }
      case expr::kind::compare: {
        value left = eval(*e.args[0], sc);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          value right = eval(*e.args[i + 1], sc);
          line_ = e.line;
          if (!compare_values(e.ops[i], left, right, *this)) return value(false);
          left = std::move(right);
        }
        return value(true);
      }
      case expr::kind::logical_and: {
        value a = eval(*e.args[0], sc);
        return a.truthy() ? eval(*e.args[1], sc) : a;
      }
      case expr::kind::logical_or: {
        value a = eval(*e.args[0], sc);
        return a.truthy() ? a : eval(*e.args[1], sc);
      }
      case expr::kind::conditional:
        if (eval(*e.args[0], sc).truthy()) return eval(*e.args[1], sc);
        return e.args[2] ? eval(*e.args[2], sc) : value::undefined("the condition was false");
    }
    return value();
  }

  value eval_subscript(const expr& e, const scope_ptr& sc) {
    const value obj = eval(*e.args[0], sc);
    const expr& index = *e.args[1];
    if (index.k == expr::kind::slice) {
      std::array<value, 3> bounds;
      for (size_t i = 0; i < 3; ++i) {
        if (index.args[i]) bounds[i] = eval(*index.args[i], sc);
      }
      line_ = e.line;
      return get_slice(obj, bounds[0], bounds[1], bounds[2], *this);
    }
    const value key = eval(index, sc);
    line_ = e.line;
    return get_item(obj, key, *this);
  }

  const render_options& options_;
  std::string* out_ = nullptr;
  int line_ = 0;
  int depth_ = 0;
  uint64_t steps_ = 0;
  uint64_t bytes_built_ = 0;
  std::vector<scope_ptr> retained_scopes_;
  std::vector<value> namespaces_;
};

}  // namespace

}  // namespace detail

chat_template_program chat_template_program::parse(std::string_view source) {
  chat_template_program p;
  p.program_ = std::make_shared<const detail::program>(detail::parse_template(source));
  return p;
}

std::string chat_template_program::render(const nlohmann::ordered_json& context,
                                          const render_options& options) const {
  detail::renderer r(options);
  return r.run(*program_, context);
}

}  // namespace rbee::tmpl
