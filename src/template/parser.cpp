// The lexer and parser: template text to the tree of ast.h, with Jinja's whitespace rules as
// Hugging Face configures them (trim_blocks, lstrip_blocks, no kept trailing newline).
#include <cstdlib>
#include <initializer_list>
#include <optional>

#include "template/ast.h"

namespace rbee::tmpl::detail {

namespace {

// Deeper nesting than this is hostile, not a chat template.
constexpr int max_parse_depth = 256;

struct token {
  enum class kind {
    text,
    var_begin,
    var_end,
    block_begin,
    block_end,
    name,
    string,
    integer,
    number,
    op,
    end,
  };
  kind k;
  std::string text;  // text, name, string value or operator
  int line = 0;
  int64_t integer = 0;
  double number = 0;
};

[[noreturn]] void syntax_error(int line, const std::string& message) {
  throw template_error(template_error::kind::syntax, line, message);
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_name_start(c) || is_digit(c);
}

// Jinja reads templates with newlines normalised to "\n" and drops one trailing newline
// (keep_trailing_newline is off).
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

class lexer {
 public:
  explicit lexer(std::string_view source) : src_(normalize_newlines(source)) {}

  std::vector<token> run() {
    bool line_starting = true;  // the last tag ended a line (where lstrip_blocks applies)
    while (pos_ < src_.size()) {
      const size_t start = next_tag(pos_);
      std::string text = src_.substr(pos_, start - pos_);
      const int text_line = line_;
      advance_to(start);
      if (start == src_.size()) {
        emit_text(std::move(text), text_line);
        break;
      }
      const char tag = src_[start + 1];
      const char modifier = start + 2 < src_.size() ? src_[start + 2] : '\0';
      if (modifier == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (tag != '{' && modifier != '+') {
        // lstrip_blocks: blanks between a line start and a block or comment tag go.
        const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((line_start > 0 || line_starting) && line_start < text.size() &&
            text.find_first_not_of(" \t\r\v\f", line_start) == std::string::npos) {
          text.resize(line_start);
        }
      }
      emit_text(std::move(text), text_line);
      advance_to(start + 2 + (modifier == '-' || modifier == '+' ? 1 : 0));
      if (tag == '#') {
        line_starting = skip_comment();
      } else {
        line_starting = lex_tag(tag);
      }
    }
    tokens_.push_back({token::kind::end, "", line_, 0, 0});
    return std::move(tokens_);
  }

 private:
  size_t next_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return src_.size();
  }

  void advance_to(size_t to) {
    for (; pos_ < to; ++pos_) {
      if (src_[pos_] == '\n') ++line_;
    }
  }

  void emit_text(std::string text, int line) {
    if (!text.empty()) tokens_.push_back({token::kind::text, std::move(text), line, 0, 0});
  }

  // After a tag's closing delimiter: "-" strips all following whitespace, a block or comment
  // end (without "+") drops one newline (trim_blocks). Returns whether a line starts there.
  bool finish_tag(bool strip, bool block_like, bool plus) {
    if (strip) {
      bool newline_last = false;
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        newline_last = src_[pos_] == '\n';
        advance_to(pos_ + 1);
      }
      return newline_last;
    }
    if (block_like && !plus && pos_ < src_.size() && src_[pos_] == '\n') {
      advance_to(pos_ + 1);
      return true;
    }
    return false;
  }

  bool skip_comment() {
    const int line = line_;
    const size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) syntax_error(line, "unterminated comment");
    const bool strip = end > pos_ && src_[end - 1] == '-';
    const bool plus = end > pos_ && src_[end - 1] == '+';
    advance_to(end + 2);
    return finish_tag(strip, true, plus);
  }

  bool starts_with(std::string_view s) const { return src_.compare(pos_, s.size(), s) == 0; }

  bool lex_tag(char tag) {
    const bool block = tag == '%';
    const int begin_line = line_;
    tokens_.push_back({block ? token::kind::block_begin : token::kind::var_begin, "", line_, 0, 0});
    int depth = 0;  // open brackets: a "}}" inside a dict literal does not end the tag
    for (;;) {
      while (pos_ < src_.size() && is_space(src_[pos_])) advance_to(pos_ + 1);
      if (pos_ >= src_.size()) {
        syntax_error(begin_line, block ? "unterminated '{%' tag" : "unterminated '{{' tag");
      }
      const std::string_view end = block ? "%}" : "}}";
      const bool strip = src_[pos_] == '-' && src_.compare(pos_ + 1, 2, end) == 0;
      const bool plus = block && src_[pos_] == '+' && src_.compare(pos_ + 1, 2, end) == 0;
      if ((depth == 0 || block) && (strip || plus || starts_with(end))) {
        tokens_.push_back({block ? token::kind::block_end : token::kind::var_end, "", line_, 0, 0});
        advance_to(pos_ + 2 + (strip || plus ? 1 : 0));
        return finish_tag(strip, block, plus);
      }
      lex_token(depth);
    }
  }

  void lex_token(int& depth) {
    const char c = src_[pos_];
    if (is_name_start(c)) {
      const size_t start = pos_;
      while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
      tokens_.push_back({token::kind::name, src_.substr(start, pos_ - start), line_, 0, 0});
    } else if (is_digit(c)) {
      lex_number();
    } else if (c == '\'' || c == '"') {
      lex_string(c);
    } else {
      static constexpr std::string_view two_char_ops[] = {"==", "!=", "<=", ">=", "//", "**"};
      for (const std::string_view op : two_char_ops) {
        if (starts_with(op)) {
          tokens_.push_back({token::kind::op, std::string(op), line_, 0, 0});
          pos_ += 2;
          return;
        }
      }
      if (std::string_view("+-*/%~()[]{},.:|=<>").find(c) == std::string_view::npos) {
        syntax_error(line_, std::string("unexpected character '") + c + "'");
      }
      if (c == '(' || c == '[' || c == '{') ++depth;
      if (c == ')' || c == ']' || c == '}') --depth;
      tokens_.push_back({token::kind::op, std::string(1, c), line_, 0, 0});
      ++pos_;
    }
  }

  void lex_number() {
    const size_t start = pos_;
    auto digits = [&] {
      while (pos_ < src_.size() && (is_digit(src_[pos_]) || src_[pos_] == '_')) ++pos_;
    };
    digits();
    // After a '.', digits are an index (x.0), never a float's fraction.
    const bool after_dot =
        !tokens_.empty() && tokens_.back().k == token::kind::op && tokens_.back().text == ".";
    bool is_float = false;
    if (!after_dot && pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (!after_dot && pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && is_digit(src_[p])) {
        is_float = true;
        pos_ = p;
        digits();
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    token t{is_float ? token::kind::number : token::kind::integer, text, line_, 0, 0};
    if (is_float) {
      t.number = std::strtod(text.c_str(), nullptr);
    } else {
      errno = 0;
      t.integer = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) syntax_error(line_, "integer literal out of range: " + text);
    }
    tokens_.push_back(std::move(t));
  }

  uint32_t hex_escape(size_t digits) {
    if (pos_ + digits > src_.size()) syntax_error(line_, "truncated escape in string literal");
    uint32_t cp = 0;
    for (size_t i = 0; i < digits; ++i) {
      const char h = src_[pos_ + i];
      const int d = is_digit(h)              ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                             : -1;
      if (d < 0) syntax_error(line_, "bad escape in string literal");
      cp = cp * 16 + uint32_t(d);
    }
    pos_ += digits;
    if (cp > 0x10ffff) syntax_error(line_, "bad escape in string literal");
    return cp;
  }

  // Jinja reads literals with Python's unicode-escape rules.
  void lex_string(char quote) {
    const int line = line_;
    ++pos_;
    std::string out;
    for (;;) {
      if (pos_ >= src_.size()) syntax_error(line, "unterminated string literal");
      const char c = src_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        if (c == '\n') ++line_;
        out += c;
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= src_.size()) syntax_error(line, "unterminated string literal");
      const char e = src_[pos_ + 1];
      pos_ += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '0':
          out += '\0';
          break;
        case '\n':
          ++line_;
          break;  // a line continuation
        case 'x':
          append_utf8(out, hex_escape(2));
          break;
        case 'u':
          append_utf8(out, hex_escape(4));
          break;
        case 'U':
          append_utf8(out, hex_escape(8));
          break;
        default:  // Python keeps unknown escapes as written
          out += '\\';
          out += e;
      }
    }
    tokens_.push_back({token::kind::string, std::move(out), line, 0, 0});
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<token> tokens_;
};

class parser {
 public:
  explicit parser(std::vector<token> tokens) : tokens_(std::move(tokens)) {}

  program run() {
    program p;
    p.body = parse_body({}, nullptr);
    return p;
  }

 private:
  // ---- token helpers ----
  const token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const token& next() {
    const token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool is_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).k == token::kind::op && peek(ahead).text == op;
  }
  bool is_name(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).k == token::kind::name && peek(ahead).text == name;
  }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  static std::string describe(const token& t) {
    switch (t.k) {
      case token::kind::end:
        return "end of template";
      case token::kind::block_end:
        return "end of tag '%}'";
      case token::kind::var_end:
        return "end of '}}'";
      case token::kind::text:
        return "text";
      case token::kind::string:
        return "string literal";
      default:
        return "'" + t.text + "'";
    }
  }
  [[noreturn]] void unexpected(const std::string& expected) const {
    syntax_error(peek().line, "expected " + expected + ", got " + describe(peek()));
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) unexpected("'" + std::string(op) + "'");
  }
  std::string expect_name() {
    if (peek().k != token::kind::name) unexpected("a name");
    return next().text;
  }
  void expect_block_end() {
    if (peek().k != token::kind::block_end) unexpected("'%}'");
    next();
  }

  struct depth_guard {
    explicit depth_guard(parser& p) : p_(p) {
      if (++p_.depth_ > max_parse_depth) syntax_error(p_.peek().line, "template nests too deeply");
    }
    ~depth_guard() { --p_.depth_; }
    parser& p_;
  };

  expr_ptr make(expr::kind k, int line) {
    auto e = std::make_unique<expr>();
    e->k = k;
    e->line = line;
    return e;
  }

  // ---- statements ----
  // Parses nodes until a block tag named in `ends` (its name consumed, stored in `which`).
  node_list parse_body(std::initializer_list<std::string_view> ends, std::string* which) {
    depth_guard guard(*this);
    node_list body;
    for (;;) {
      const token& t = peek();
      if (t.k == token::kind::end) {
        if (ends.size() > 0) {
          syntax_error(t.line, "unexpected end of template, expected '{% " +
                                   std::string(*ends.begin()) + " %}'");
        }
        return body;
      }
      if (t.k == token::kind::text) {
        node n{node::kind::text};
        n.line = t.line;
        n.text = next().text;
        body.push_back(std::move(n));
        continue;
      }
      if (t.k == token::kind::var_begin) {
        next();
        node n{node::kind::output};
        n.line = t.line;
        n.value = parse_tuple_or_expression();
        if (peek().k != token::kind::var_end) unexpected("'}}'");
        next();
        body.push_back(std::move(n));
        continue;
      }
      if (t.k != token::kind::block_begin) unexpected("text or a tag");
      next();
      const int line = peek().line;
      const std::string name = expect_name();
      for (const std::string_view end : ends) {
        if (name == end) {
          *which = name;
          return body;
        }
      }
      parse_statement(name, line, body);
    }
  }

  void parse_statement(const std::string& name, int line, node_list& body) {
    if (name == "if") {
      body.push_back(parse_if(line));
    } else if (name == "for") {
      body.push_back(parse_for(line));
    } else if (name == "set") {
      body.push_back(parse_set(line));
    } else if (name == "macro") {
      body.push_back(parse_macro(line));
    } else if (name == "break" || name == "continue") {
      expect_block_end();
      node n{name == "break" ? node::kind::loop_break : node::kind::loop_continue};
      n.line = line;
      body.push_back(std::move(n));
    } else if (name == "generation") {
      // transformers' {% generation %} marks assistant text for training masks; it renders
      // its body unchanged.
      expect_block_end();
      std::string which;
      node_list inner = parse_body({"endgeneration"}, &which);
      expect_block_end();
      for (node& n : inner) body.push_back(std::move(n));
    } else {
      syntax_error(line, "unknown or misplaced tag '" + name + "'");
    }
  }

  node parse_if(int line) {
    node n{node::kind::if_chain};
    n.line = line;
    expr_ptr condition = parse_expression();
    for (;;) {
      expect_block_end();
      std::string which;
      node_list branch = parse_body({"elif", "else", "endif"}, &which);
      n.branches.emplace_back(std::move(condition), std::move(branch));
      if (which == "elif") {
        condition = parse_expression();
      } else if (which == "else") {
        expect_block_end();
        node_list else_branch = parse_body({"endif"}, &which);
        n.branches.emplace_back(nullptr, std::move(else_branch));
        expect_block_end();
        return n;
      } else {
        expect_block_end();
        return n;
      }
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> targets;
    const bool parenthesized = skip_op("(");
    do {
      targets.push_back(expect_name());
    } while (skip_op(","));
    if (parenthesized) expect_op(")");
    return targets;
  }

  node parse_for(int line) {
    node n{node::kind::for_loop};
    n.line = line;
    n.targets = parse_targets();
    if (!skip_name("in")) unexpected("'in'");
    n.value = parse_or();
    if (skip_name("if")) n.condition = parse_expression();
    if (is_name("recursive")) syntax_error(peek().line, "recursive loops are not supported");
    expect_block_end();
    std::string which;
    n.body = parse_body({"else", "endfor"}, &which);
    if (which == "else") {
      expect_block_end();
      n.else_body = parse_body({"endfor"}, &which);
    }
    expect_block_end();
    return n;
  }

  node parse_set(int line) {
    node n{node::kind::set};
    n.line = line;
    n.targets.push_back(expect_name());
    if (skip_op(".")) {
      n.attribute = expect_name();
    } else {
      while (skip_op(",")) n.targets.push_back(expect_name());
    }
    if (skip_op("=")) {
      n.value = parse_tuple_or_expression();
      expect_block_end();
      return n;
    }
    if (n.targets.size() != 1 || !n.attribute.empty()) unexpected("'='");
    expect_block_end();
    n.k = node::kind::set_block;
    std::string which;
    n.body = parse_body({"endset"}, &which);
    expect_block_end();
    return n;
  }

  node parse_macro(int line) {
    node n{node::kind::macro};
    n.line = line;
    n.text = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      std::string param = expect_name();
      expr_ptr default_value;
      if (skip_op("=")) default_value = parse_expression();
      n.params.emplace_back(std::move(param), std::move(default_value));
      if (!skip_op(",")) break;
    }
    expect_op(")");
    expect_block_end();
    std::string which;
    n.body = parse_body({"endmacro"}, &which);
    if (peek().k == token::kind::name) next();  // {% endmacro name %}
    expect_block_end();
    return n;
  }

  // ---- expressions (Jinja's precedence, loosest first) ----
  expr_ptr parse_tuple_or_expression() {
    const int line = peek().line;
    expr_ptr first = parse_expression();
    if (!is_op(",")) return first;
    auto tuple = make(expr::kind::tuple, line);
    tuple->args.push_back(std::move(first));
    while (skip_op(",")) {
      if (peek().k == token::kind::block_end || peek().k == token::kind::var_end) break;
      tuple->args.push_back(parse_expression());
    }
    return tuple;
  }

  expr_ptr parse_expression() {
    depth_guard guard(*this);
    expr_ptr e = parse_or();
    while (is_name("if")) {
      const int line = next().line;
      auto cond = make(expr::kind::conditional, line);
      cond->args.push_back(parse_or());
      cond->args.push_back(std::move(e));
      cond->args.push_back(skip_name("else") ? parse_expression() : nullptr);
      e = std::move(cond);
    }
    return e;
  }

  expr_ptr parse_or() {
    expr_ptr e = parse_and();
    while (is_name("or")) {
      auto n = make(expr::kind::logical_or, next().line);
      n->args.push_back(std::move(e));
      n->args.push_back(parse_and());
      e = std::move(n);
    }
    return e;
  }

  expr_ptr parse_and() {
    expr_ptr e = parse_not();
    while (is_name("and")) {
      auto n = make(expr::kind::logical_and, next().line);
      n->args.push_back(std::move(e));
      n->args.push_back(parse_not());
      e = std::move(n);
    }
    return e;
  }

  expr_ptr parse_not() {
    if (is_name("not")) {
      depth_guard guard(*this);
      auto n = make(expr::kind::negate, next().line);
      n->args.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }

  expr_ptr parse_compare() {
    const int line = peek().line;
    expr_ptr first = parse_math1();
    expr_ptr chain;
    for (;;) {
      std::string op;
      if (peek().k == token::kind::op &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
           peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!chain) {
        chain = make(expr::kind::compare, line);
        chain->args.push_back(std::move(first));
      }
      chain->ops.push_back(op);
      chain->args.push_back(parse_math1());
    }
    return chain ? std::move(chain) : std::move(first);
  }

  expr_ptr binary(std::string op, expr_ptr lhs, expr_ptr rhs, int line) {
    auto n = make(expr::kind::binary, line);
    n->name = std::move(op);
    n->args.push_back(std::move(lhs));
    n->args.push_back(std::move(rhs));
    return n;
  }

  expr_ptr parse_math1() {
    expr_ptr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const token& t = next();
      e = binary(t.text, std::move(e), parse_concat(), t.line);
    }
    return e;
  }

  expr_ptr parse_concat() {
    expr_ptr e = parse_math2();
    while (is_op("~")) {
      const int line = next().line;
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }

  expr_ptr parse_math2() {
    expr_ptr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const token& t = next();
      e = binary(t.text, std::move(e), parse_pow(), t.line);
    }
    return e;
  }

  expr_ptr parse_pow() {
    expr_ptr e = parse_unary(true);
    while (is_op("**")) {
      const int line = next().line;
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }

  expr_ptr parse_unary(bool with_filter) {
    depth_guard guard(*this);
    expr_ptr e;
    if (is_op("-") || is_op("+")) {
      const token& t = next();
      e = make(expr::kind::unary, t.line);
      e->name = t.text;
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filters_and_tests(std::move(e));
    return e;
  }

  expr_ptr parse_primary() {
    const token& t = peek();
    switch (t.k) {
      case token::kind::name: {
        next();
        if (t.text == "true" || t.text == "True") return literal(value(true), t.line);
        if (t.text == "false" || t.text == "False") return literal(value(false), t.line);
        if (t.text == "none" || t.text == "None") return literal(value::none(), t.line);
        auto e = make(expr::kind::name, t.line);
        e->name = t.text;
        return e;
      }
      case token::kind::string: {
        std::string s = next().text;
        while (peek().k == token::kind::string) s += next().text;  // adjacent literals join
        return literal(value(std::move(s)), t.line);
      }
      case token::kind::integer:
        next();
        return literal(value(t.integer), t.line);
      case token::kind::number:
        next();
        return literal(value(t.number), t.line);
      case token::kind::op:
        if (t.text == "(") return parse_parenthesized();
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    unexpected("an expression");
  }

  expr_ptr literal(value v, int line) {
    auto e = make(expr::kind::literal, line);
    e->literal = std::move(v);
    return e;
  }

  expr_ptr parse_parenthesized() {
    const int line = next().line;
    if (skip_op(")")) return make(expr::kind::tuple, line);
    expr_ptr first = parse_expression();
    if (skip_op(")")) return first;
    auto tuple = make(expr::kind::tuple, line);
    tuple->args.push_back(std::move(first));
    while (skip_op(",")) {
      if (is_op(")")) break;
      tuple->args.push_back(parse_expression());
    }
    expect_op(")");
    return tuple;
  }

  expr_ptr parse_list() {
    auto list = make(expr::kind::list, next().line);
    while (!is_op("]")) {
      list->args.push_back(parse_expression());
      if (!skip_op(",")) break;
    }
    expect_op("]");
    return list;
  }

  expr_ptr parse_dict() {
    auto dict = make(expr::kind::dict, next().line);
    while (!is_op("}")) {
      dict->args.push_back(parse_expression());
      expect_op(":");
      dict->args.push_back(parse_expression());
      if (!skip_op(",")) break;
    }
    expect_op("}");
    return dict;
  }

  expr_ptr parse_postfix(expr_ptr e) {
    for (;;) {
      if (is_op(".")) {
        const int line = next().line;
        if (peek().k == token::kind::integer) {
          auto sub = make(expr::kind::subscript, line);
          sub->args.push_back(std::move(e));
          sub->args.push_back(literal(value(next().integer), line));
          e = std::move(sub);
        } else {
          auto attr = make(expr::kind::attribute, line);
          attr->name = expect_name();
          attr->args.push_back(std::move(e));
          e = std::move(attr);
        }
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  expr_ptr parse_subscript(expr_ptr target) {
    const int line = next().line;
    auto sub = make(expr::kind::subscript, line);
    sub->args.push_back(std::move(target));
    expr_ptr start;
    if (!is_op(":")) start = parse_expression();
    if (is_op(":")) {
      auto slice = make(expr::kind::slice, line);
      next();
      slice->args.push_back(std::move(start));
      slice->args.push_back(is_op(":") || is_op("]") ? nullptr : parse_expression());
      expr_ptr step;
      if (skip_op(":") && !is_op("]")) step = parse_expression();
      slice->args.push_back(std::move(step));
      sub->args.push_back(std::move(slice));
    } else {
      sub->args.push_back(std::move(start));
    }
    expect_op("]");
    return sub;
  }

  void parse_call_args(expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().k == token::kind::name && is_op("=", 1)) {
        std::string name = next().text;
        next();
        call.named.emplace_back(std::move(name), parse_expression());
      } else {
        if (!call.named.empty()) {
          syntax_error(peek().line, "positional argument after keyword argument");
        }
        call.args.push_back(parse_expression());
      }
      if (!skip_op(",")) break;
    }
    expect_op(")");
  }

  expr_ptr parse_call(expr_ptr callee) {
    auto call = make(expr::kind::call, peek().line);
    call->args.push_back(std::move(callee));
    parse_call_args(*call);
    return call;
  }

  expr_ptr parse_filters_and_tests(expr_ptr e) {
    for (;;) {
      if (is_op("|")) {
        const int line = next().line;
        auto f = make(expr::kind::filter, line);
        f->name = expect_name();
        if (!is_known_filter(f->name)) syntax_error(line, "unknown filter '" + f->name + "'");
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        const int line = next().line;
        auto t = make(expr::kind::test, line);
        t->negated = skip_name("not");
        t->name = expect_name();
        if (!is_known_test(t->name)) syntax_error(line, "unknown test '" + t->name + "'");
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (takes_bare_test_argument()) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  // `x is divisibleby 3`, `x is equalto 'a'`: one argument without parentheses.
  bool takes_bare_test_argument() const {
    const token& t = peek();
    if (t.k == token::kind::name) {
      return t.text != "else" && t.text != "or" && t.text != "and" && t.text != "is" &&
             t.text != "if" && t.text != "in" && t.text != "not";
    }
    return t.k == token::kind::string || t.k == token::kind::integer ||
           t.k == token::kind::number || is_op("[") || is_op("{");
  }

  std::vector<token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

program parse_template(std::string_view source) {
  return parser(lexer(source).run()).run();
}

}  // namespace rbee::tmpl::detail
