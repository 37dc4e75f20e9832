// The canonical formatter.
//
// The layout is decided by the AST alone, so formatting is idempotent by
// construction: a second run sees the same tree and prints the same text.
// What the AST does not hold is taken from the source verbatim: literal
// spellings (escapes, number forms) and comments.
//
// Comments are attached to statements (a top-level declaration, a block
// header, one clause, a closing brace). A comment that starts before a
// statement ends is printed on its own lines before it; a comment that starts
// on the line where a statement ends is kept at the end of that line. Blank
// lines between statements are kept, at most one; block declarations are
// always separated by one.
#include <string>

#include "compiler/compiler.h"
#include "compiler/internal/ast.h"
#include "compiler/internal/parser.h"

namespace kt {
namespace {

using internal::ActionKind;
using internal::ClauseKind;
using internal::Decl;
using internal::DeclKind;
using internal::ExpectKind;
using internal::Expr;
using internal::ExprKind;
using internal::LimitClauseKind;

constexpr std::size_t kMaxWidth = 100;

class Formatter {
 public:
  Formatter(std::string_view text, const internal::FileAst& ast) : text_(text), ast_(ast) {}

  std::string Run() {
    bool first = true;
    bool prev_block = false;
    for (const Decl& d : ast_.decls) {
      bool block = d.kind == DeclKind::kPolicy || d.kind == DeclKind::kLimit ||
                   d.kind == DeclKind::kPrice || d.kind == DeclKind::kTest || d.kind == DeclKind::kProvider;
      uint32_t group_start = d.span.begin;
      if (next_comment_ < ast_.comments.size()) {
        group_start = std::min(group_start, ast_.comments[next_comment_].span.begin);
      }
      if (!first && (block || prev_block || BlankBetween(last_end_, group_start))) {
        out_ += "\n";
      }
      blank_allowed_ = !first;
      at_block_start_ = false;
      EmitDecl(d);
      first = false;
      prev_block = block;
    }
    // Trailing comments at the end of the file.
    if (next_comment_ < ast_.comments.size()) {
      if (!first && BlankBetween(last_end_, ast_.comments[next_comment_].span.begin)) out_ += "\n";
      FlushCommentsBefore(static_cast<uint32_t>(text_.size()) + 1, "");
    }
    return out_;
  }

 private:
  std::string_view Src(Span s) const { return text_.substr(s.begin, s.end - s.begin); }

  bool BlankBetween(uint32_t a, uint32_t b) const {
    if (b <= a) return false;
    int newlines = 0;
    for (uint32_t i = a; i < b && i < text_.size(); ++i) {
      if (text_[i] == '\n' && ++newlines >= 2) return true;
    }
    return false;
  }

  bool NewlineBetween(uint32_t a, uint32_t b) const {
    for (uint32_t i = a; i < b && i < text_.size(); ++i) {
      if (text_[i] == '\n') return true;
    }
    return false;
  }

  // Prints, on their own lines, every comment that starts before `limit`.
  void FlushCommentsBefore(uint32_t limit, const std::string& indent) {
    while (next_comment_ < ast_.comments.size() &&
           ast_.comments[next_comment_].span.begin < limit) {
      const internal::Comment& c = ast_.comments[next_comment_++];
      if (blank_allowed_ && !at_block_start_ && BlankBetween(last_end_, c.span.begin) &&
          !out_.empty() && out_.size() >= 2 && out_.substr(out_.size() - 2) != "\n\n") {
        out_ += "\n";
      }
      out_ += indent + std::string(Src(c.span)) + "\n";
      last_end_ = c.span.end;
      blank_allowed_ = true;
      at_block_start_ = false;
    }
  }

  // Emits one statement: leading comments, the lines, a trailing comment.
  void Statement(Span span, const std::string& indent, const std::vector<std::string>& lines) {
    FlushCommentsBefore(span.end, indent);
    if (blank_allowed_ && !at_block_start_ && BlankBetween(last_end_, span.begin) &&
        out_.size() >= 2 && out_.substr(out_.size() - 2) != "\n\n") {
      out_ += "\n";
    }
    for (std::size_t i = 0; i < lines.size(); ++i) {
      out_ += indent + lines[i];
      if (i + 1 < lines.size()) out_ += "\n";
    }
    last_end_ = span.end;
    if (next_comment_ < ast_.comments.size()) {
      const internal::Comment& c = ast_.comments[next_comment_];
      if (!NewlineBetween(span.end, c.span.begin)) {
        out_ += "  " + std::string(Src(c.span));
        last_end_ = c.span.end;
        ++next_comment_;
      }
    }
    out_ += "\n";
    blank_allowed_ = true;
    at_block_start_ = false;
  }

  void OpenBlock(Span header, const std::string& text) {
    Statement(header, "", {text + " {"});
    at_block_start_ = true;
  }

  void CloseBlock(Span close) {
    at_block_start_ = false;
    FlushCommentsBefore(close.begin, "  ");
    Statement(close, "", {"}"});
  }

  std::string Expr(const internal::Expr& e) const {
    switch (e.kind) {
      case ExprKind::kInt:
      case ExprKind::kFloat:
      case ExprKind::kDuration:
      case ExprKind::kString:
      case ExprKind::kIString:
      case ExprKind::kRegex:
        return std::string(Src(e.span));
      case ExprKind::kBool:
        return e.bool_value ? "true" : "false";
      case ExprKind::kNull:
        return "null";
      case ExprKind::kName:
        return e.text;
      case ExprKind::kCall:
        return e.text + "(" + Join(e, ", ") + ")";
      case ExprKind::kField:
        return Expr(*e.children[0]) + "." + std::string(Src(e.text_span));
      case ExprKind::kIndex:
        return Expr(*e.children[0]) + "[" + Expr(*e.children[1]) + "]";
      case ExprKind::kCast:
        return Expr(*e.children[0]) + " as " + e.text;
      case ExprKind::kNeg:
        return "-" + Expr(*e.children[0]);
      case ExprKind::kUnion:
        return Join(e, " | ");
      case ExprKind::kCoalesce:
        return Join(e, " ?? ");
      case ExprKind::kCompare:
      case ExprKind::kMatch:
        return Expr(*e.children[0]) + " " + e.text + " " + Expr(*e.children[1]);
      case ExprKind::kIn:
        return Expr(*e.children[0]) + (e.bool_value ? " not in " : " in ") + Expr(*e.children[1]);
      case ExprKind::kNot:
        return "not " + Expr(*e.children[0]);
      case ExprKind::kAnd:
        return Join(e, " and ");
      case ExprKind::kOr:
        return Join(e, " or ");
      case ExprKind::kQuant:
        return std::string(e.bool_value ? "all " : "any ") + e.text + " in " +
               Expr(*e.children[0]) + ": " + Expr(*e.children[1]);
      case ExprKind::kList:
        return "[" + Join(e, ", ") + "]";
      case ExprKind::kObject: {
        if (e.children.empty()) return "{}";
        std::string s = "{ ";
        for (std::size_t i = 0; i < e.children.size(); ++i) {
          if (i > 0) s += ", ";
          s += std::string(Src(e.key_spans[i])) + ": " + Expr(*e.children[i]);
        }
        return s + " }";
      }
      case ExprKind::kParen:
        return "(" + Expr(*e.children[0]) + ")";
    }
    return {};
  }

  std::string Join(const internal::Expr& e, const char* sep) const {
    std::string s;
    for (std::size_t i = 0; i < e.children.size(); ++i) {
      if (i > 0) s += sep;
      s += Expr(*e.children[i]);
    }
    return s;
  }

  // A literal value (test input, provider field) laid out on one line when it
  // fits, otherwise one field or element per line, with trailing commas.
  std::string Value(const internal::Expr& e, std::size_t column, std::size_t indent) const {
    std::string flat = Expr(e);
    if (column + flat.size() <= kMaxWidth ||
        (e.kind != ExprKind::kObject && e.kind != ExprKind::kList) || e.children.empty()) {
      return flat;
    }
    std::string inner(indent + 2, ' ');
    std::string s = e.kind == ExprKind::kObject ? "{\n" : "[\n";
    for (std::size_t i = 0; i < e.children.size(); ++i) {
      std::string head = e.kind == ExprKind::kObject ? std::string(Src(e.key_spans[i])) + ": " : "";
      s += inner + head + Value(*e.children[i], inner.size() + head.size(), indent + 2) + ",\n";
    }
    return s + std::string(indent, ' ') + (e.kind == ExprKind::kObject ? "}" : "]");
  }

  static std::vector<std::string> Lines(const std::string& text, std::size_t strip) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (true) {
      std::size_t nl = text.find('\n', start);
      std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if (!lines.empty() && line.size() >= strip) line = line.substr(strip);
      lines.push_back(line);
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    return lines;
  }

  // `head` followed by an expression; long and/or chains break before each
  // operator, indented under the clause.
  std::vector<std::string> Wrapped(const std::string& head, const internal::Expr& e) const {
    std::string one = head + Expr(e);
    if (one.size() + 2 <= kMaxWidth || (e.kind != ExprKind::kAnd && e.kind != ExprKind::kOr)) {
      return {one};
    }
    const char* op = e.kind == ExprKind::kAnd ? "  and " : "  or ";
    std::vector<std::string> lines = {head + Expr(*e.children[0])};
    for (std::size_t i = 1; i < e.children.size(); ++i) {
      lines.push_back(op + Expr(*e.children[i]));
    }
    return lines;
  }

  std::string Action(const internal::Action& a) const {
    std::string s = a.kind == ActionKind::kBlock ? "block" : "flag";
    if (a.message.present) s += " " + std::string(Src(a.message.span));
    if (a.code.present) s += " code " + std::string(Src(a.code.span));
    return s;
  }

  void EmitDecl(const Decl& d) {
    switch (d.kind) {
      case DeclKind::kImport: {
        const internal::Import& im = *d.import;
        std::string s = "import " + std::string(Src(im.target_span));
        if (Src(im.alias_span) != Src(im.target_span)) s += " as " + im.alias;
        Statement(d.span, "", {s});
        break;
      }
      case DeclKind::kPattern:
        Statement(d.span, "",
                  {"pattern " + d.pattern->name.text + " = " + Expr(*d.pattern->value)});
        break;
      case DeclKind::kLet:
        Statement(d.span, "", {"let " + d.let->name.text + " = " + Expr(*d.let->value)});
        break;
      case DeclKind::kPolicy: {
        const internal::PolicyDecl& p = *d.policy;
        OpenBlock(Span{p.span.begin, p.open_span.end}, "policy " + std::string(Src(p.name.span)));
        for (const internal::PolicyClause& c : p.clauses) {
          std::vector<std::string> lines;
          switch (c.kind) {
            case ClauseKind::kOn: {
              std::string s = "on ";
              for (std::size_t i = 0; i < c.names.size(); ++i) {
                s += (i > 0 ? ", " : "") + c.names[i].text;
              }
              lines = {s};
              break;
            }
            case ClauseKind::kMode:
              lines = {"mode " + c.names[0].text};
              break;
            case ClauseKind::kWhen:
              lines = Wrapped("when ", *c.condition);
              break;
            case ClauseKind::kThen:
              if (c.action.kind == ActionKind::kRedact) {
                std::string head = "then redact ";
                for (std::size_t i = 0; i < c.action.items.size(); ++i) {
                  const internal::RedactItem& item = c.action.items[i];
                  std::string s = (i == 0 ? head : std::string(head.size(), ' ')) +
                                  Expr(*item.pattern) + " with " +
                                  std::string(Src(item.replacement.span));
                  if (i + 1 < c.action.items.size()) s += ",";
                  lines.push_back(s);
                }
              } else {
                lines = {"then " + Action(c.action)};
              }
              break;
          }
          Statement(c.span, "  ", lines);
        }
        CloseBlock(p.close_span);
        break;
      }
      case DeclKind::kLimit: {
        const internal::LimitDecl& l = *d.limit;
        OpenBlock(Span{l.span.begin, l.open_span.end},
                  (l.budget ? "budget " : "limit ") + std::string(Src(l.name.span)));
        for (const internal::LimitClause& c : l.clauses) {
          std::vector<std::string> lines;
          switch (c.kind) {
            case LimitClauseKind::kKey:
              lines = {"key " + Expr(*c.expr)};
              break;
            case LimitClauseKind::kWhen:
              lines = Wrapped("when ", *c.expr);
              break;
            case LimitClauseKind::kRequests:
            case LimitClauseKind::kTokens:
              lines = {std::string(c.kind == LimitClauseKind::kRequests ? "requests " : "tokens ") +
                       std::string(Src(c.amount_span)) + " per " + c.unit.text};
              break;
            case LimitClauseKind::kAmount:
              lines = {c.word.text + " " + std::string(Src(c.amount_span)) +
                       (c.unit.text.empty() ? "" : " per " + c.unit.text)};
              break;
          }
          Statement(c.span, "  ", lines);
        }
        CloseBlock(l.close_span);
        break;
      }
      case DeclKind::kPrice: {
        const internal::PriceDecl& p = *d.price;
        OpenBlock(Span{p.span.begin, p.open_span.end}, "price " + std::string(Src(p.name.span)));
        for (const internal::PriceClause& c : p.clauses) {
          Statement(c.span, "  ", {c.word.text + " " + c.rate_text});
        }
        CloseBlock(p.close_span);
        break;
      }
      case DeclKind::kTest: {
        const internal::TestDecl& t = *d.test;
        OpenBlock(Span{t.span.begin, t.open_span.end}, "test " + std::string(Src(t.name.span)));
        for (const internal::TestClause& c : t.clauses) {
          std::string s;
          if (!c.is_expect) {
            s = c.given.text + " " + Value(*c.value, 2 + c.given.text.size() + 1, 2);
          } else {
            switch (c.expect) {
              case ExpectKind::kAllow:
                s = "expect allow";
                break;
              case ExpectKind::kBlock:
                s = "expect block " + std::string(Src(c.policy.span));
                if (c.code.present) s += " code " + std::string(Src(c.code.span));
                break;
              case ExpectKind::kRedact:
                s = "expect redact " + std::string(Src(c.policy.span));
                break;
              case ExpectKind::kFlag:
                s = "expect flag " + std::string(Src(c.policy.span));
                break;
              case ExpectKind::kValue:
                s = "expect " + Expr(*c.value) + " " + std::string(Src(c.expected.span));
                break;
            }
          }
          Statement(c.span, "  ", Lines(s, 2));
        }
        CloseBlock(t.close_span);
        break;
      }
      case DeclKind::kProvider: {
        const internal::ProviderDecl& p = *d.provider;
        OpenBlock(Span{p.span.begin, p.open_span.end}, "provider " + p.name.text);
        for (const internal::ProviderField& f : p.fields) {
          std::string head = f.name.text + ": ";
          Statement(f.span, "  ", Lines(head + Value(*f.value, 2 + head.size(), 2), 2));
        }
        CloseBlock(p.close_span);
        break;
      }
    }
  }

  std::string_view text_;
  const internal::FileAst& ast_;
  std::string out_;
  std::size_t next_comment_ = 0;
  uint32_t last_end_ = 0;
  bool blank_allowed_ = false;
  bool at_block_start_ = false;
};

}  // namespace

FormatResult Format(std::string_view path, std::string_view text, const Options& options) {
  FormatResult result;
  internal::DiagnosticSink sink;
  std::string p(path);
  auto ast = internal::ParseFile(p, text, options, &sink);
  result.diagnostics = std::move(sink.diagnostics());
  if (ast == nullptr) return result;
  Formatter f(text, *ast);
  result.text = f.Run();
  result.ok = true;
  return result;
}

}  // namespace kt
