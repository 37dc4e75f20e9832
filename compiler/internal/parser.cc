// Lexing, parsing and AST construction for one .ktp file.
//
// ANTLR works in code points and reports errors through listeners and
// exceptions; this file is the quarantine that turns all of that into byte
// spans and diagnostics. The order of work is:
//
//   1. Bounds and encoding: size limit and UTF-8 validation, before ANTLR
//      sees a byte (ANTLR's UTF-8 decoder throws on bad input).
//   2. Lex everything, report the error tokens the grammar defines for
//      unterminated strings, regexes and comments, and measure nesting depth.
//      Deep nesting stops here, because ANTLR's parser recurses per level.
//   3. Parse in SLL mode with a bail-out strategy (fast, right for almost all
//      files); only on failure re-parse in full LL mode with recovery, so one
//      run reports several syntax errors.
//   4. Build the AST from an error-free tree. Left-recursive operator chains
//      are walked iteratively and `and`/`or`/`|`/`??` chains become n-ary
//      nodes, so 10,000 conditions in a row do not become 10,000 stack frames.
#include "compiler/internal/parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "KtpLexer.h"
#include "KtpParser.h"
#include "antlr4-runtime.h"

namespace kt::internal {
namespace {

using kt_grammar::KtpLexer;
using kt_grammar::KtpParser;

constexpr const char* kEscapeHelp = "valid escapes are \\n \\t \\r \\\\ \\\" \\0 and \\u{XXXX}";

// Returns the byte offset of the first invalid UTF-8 sequence, or npos.
std::size_t FindInvalidUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > s.size()) return i;
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

std::string DisplayToken(const antlr4::dfa::Vocabulary& vocab, size_t type) {
  switch (type) {
    case antlr4::Token::EOF:
      return "end of file";
    case KtpParser::IDENT:
      return "a name";
    case KtpParser::STRING:
      return "a string";
    case KtpParser::ISTRING:
      return "a case-insensitive string";
    case KtpParser::INT:
      return "an integer";
    case KtpParser::FLOAT:
      return "a number";
    case KtpParser::DURATION:
      return "a duration";
    case KtpParser::REGEX:
      return "a regex";
    default:
      break;
  }
  std::string lit = vocab.getLiteralName(type);
  if (lit.size() >= 2 && lit.front() == '\'') lit = lit.substr(1, lit.size() - 2);
  if (lit.empty()) lit = vocab.getSymbolicName(type);
  return "`" + lit + "`";
}

class Parse {
 public:
  Parse(const std::string& path, std::string_view text, const Options& options,
        DiagnosticSink* sink)
      : path_(path), text_(text), options_(options), sink_(sink) {}

  std::unique_ptr<FileAst> Run();

 private:
  class ErrorListener : public antlr4::BaseErrorListener {
   public:
    explicit ErrorListener(Parse* parse) : parse_(parse) {}
    void syntaxError(antlr4::Recognizer* recognizer, antlr4::Token* offending, size_t, size_t,
                     const std::string& msg, std::exception_ptr) override {
      parse_->OnSyntaxError(recognizer, offending, msg);
    }

   private:
    Parse* parse_;
  };

  void BuildOffsetTable();
  std::size_t BomLength() const { return text_.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0; }
  Span TokenSpan(const antlr4::Token* t) const;
  Span CtxSpan(antlr4::ParserRuleContext* ctx) const;
  Span NodeSpan(antlr4::tree::TerminalNode* n) const { return TokenSpan(n->getSymbol()); }
  std::string_view SpanText(Span s) const { return text_.substr(s.begin, s.end - s.begin); }
  bool ScanTokens(antlr4::CommonTokenStream* tokens);
  void OnSyntaxError(antlr4::Recognizer* recognizer, antlr4::Token* offending,
                     const std::string& msg);

  void BuildDecl(KtpParser::DeclContext* ctx);
  StringLit BuildString(antlr4::tree::TerminalNode* node);
  Name BuildName(antlr4::tree::TerminalNode* node) {
    return Name{node->getText(), NodeSpan(node)};
  }
  Action BuildAction(KtpParser::ActionContext* ctx);
  void BuildAmountClause(KtpParser::AmountClauseContext* ctx, LimitClause* clause);
  std::unique_ptr<PriceDecl> BuildPrice(KtpParser::PriceDeclContext* ctx, Span span);
  // An object or provider key: a name, or a string literal's decoded value.
  Name FieldKey(KtpParser::FieldContext* f) {
    if (f->fieldName() != nullptr) return Name{f->fieldName()->getText(), CtxSpan(f->fieldName())};
    StringLit lit = BuildString(f->STRING());
    return Name{lit.value, lit.span};
  }
  ExprPtr BuildExpr(KtpParser::ExprContext* ctx, int depth);
  ExprPtr BuildPrimary(KtpParser::PrimaryContext* ctx, int depth);
  ExprPtr NewExpr(ExprKind kind, Span span) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->span = span;
    e->id = ++file_->node_count;
    return e;
  }
  ExprPtr TooDeep(Span span) {
    if (!reported_depth_) {
      reported_depth_ = true;
      sink_->Report(DiagId::kNestingTooDeep, path_, span,
                    "expression nested more than " + std::to_string(options_.max_nesting_depth) +
                        " levels deep",
                    "split the condition into named `let` or `pattern` declarations");
    }
    failed_ = true;
    return NewExpr(ExprKind::kNull, span);
  }

  const std::string& path_;
  std::string_view text_;
  const Options& options_;
  DiagnosticSink* sink_;
  std::vector<uint32_t> cp_to_byte_;
  std::unique_ptr<FileAst> file_;
  std::set<const antlr4::Token*> reported_tokens_;
  bool had_syntax_error_ = false;
  bool reported_depth_ = false;
  bool failed_ = false;
};

void Parse::BuildOffsetTable() {
  cp_to_byte_.clear();
  cp_to_byte_.reserve(text_.size() + 1);
  // ANTLR is handed the text after a UTF-8 byte order mark (and would drop
  // one itself), so its code point 0 is the byte after the mark.
  for (std::size_t i = BomLength(); i < text_.size(); ++i) {
    if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) {
      cp_to_byte_.push_back(static_cast<uint32_t>(i));
    }
  }
  cp_to_byte_.push_back(static_cast<uint32_t>(text_.size()));
}

Span Parse::TokenSpan(const antlr4::Token* t) const {
  if (t == nullptr || t->getType() == antlr4::Token::EOF) {
    auto end = static_cast<uint32_t>(text_.size());
    return Span{end, end};
  }
  std::size_t start = t->getStartIndex();
  std::size_t stop = t->getStopIndex();
  if (start >= cp_to_byte_.size()) start = cp_to_byte_.size() - 1;
  if (stop + 1 >= cp_to_byte_.size()) stop = cp_to_byte_.size() - 2;
  return Span{cp_to_byte_[start], cp_to_byte_[stop + 1]};
}

Span Parse::CtxSpan(antlr4::ParserRuleContext* ctx) const {
  Span a = TokenSpan(ctx->getStart());
  Span b = TokenSpan(ctx->getStop());
  if (ctx->getStop() == nullptr || b.end < a.begin) return a;
  return Span{a.begin, b.end};
}

bool Parse::ScanTokens(antlr4::CommonTokenStream* tokens) {
  // Nesting measure: brackets on a stack; prefix operators (`not`, `-`) and
  // quantifiers counted per bracket level. Binary operators end a prefix run
  // (`not a and not b` is shallow) but not a quantifier body.
  struct Level {
    int prefix = 0;
    int quant = 0;
  };
  std::vector<Level> levels(1);
  int depth_total = 0;  // brackets + all prefix and quantifier counts
  bool ok = true;
  for (antlr4::Token* t : tokens->getTokens()) {
    switch (t->getType()) {
      case KtpLexer::LINE_COMMENT:
        file_->comments.push_back(Comment{TokenSpan(t), true});
        break;
      case KtpLexer::BLOCK_COMMENT:
        file_->comments.push_back(Comment{TokenSpan(t), false});
        break;
      case KtpLexer::UNTERMINATED_STRING:
        sink_->Report(DiagId::kUnterminatedString, path_, TokenSpan(t),
                      "string literal is not closed before the end of the line",
                      "add the closing `\"`");
        reported_tokens_.insert(t);
        ok = false;
        break;
      case KtpLexer::UNTERMINATED_REGEX:
        sink_->Report(DiagId::kUnterminatedRegex, path_, TokenSpan(t),
                      "regex literal is not closed before the end of the line",
                      "add the closing `/`; write a slash inside the regex as `\\/`");
        reported_tokens_.insert(t);
        ok = false;
        break;
      case KtpLexer::UNTERMINATED_COMMENT:
        sink_->Report(DiagId::kUnterminatedComment, path_, TokenSpan(t),
                      "block comment is not closed", "add the closing `*/`");
        reported_tokens_.insert(t);
        ok = false;
        break;
      case KtpLexer::BAD_CHAR: {
        std::string ch(SpanText(TokenSpan(t)));
        sink_->Report(DiagId::kInvalidCharacter, path_, TokenSpan(t),
                      "unexpected character `" + ch + "`");
        reported_tokens_.insert(t);
        ok = false;
        break;
      }
      default: {
        if (t->getChannel() != antlr4::Token::DEFAULT_CHANNEL) break;
        const std::string s = t->getText();
        if (s == "(" || s == "[" || s == "{") {
          levels.emplace_back();
          ++depth_total;
        } else if (s == ")" || s == "]" || s == "}") {
          if (levels.size() > 1) {
            depth_total -= 1 + levels.back().prefix + levels.back().quant;
            levels.pop_back();
          }
        } else if (t->getType() == KtpLexer::NOT || s == "-") {
          ++levels.back().prefix;
          ++depth_total;
        } else if (t->getType() == KtpLexer::ANY || t->getType() == KtpLexer::ALL) {
          ++levels.back().quant;
          ++depth_total;
        } else if (t->getType() == KtpLexer::AND || t->getType() == KtpLexer::OR || s == ",") {
          depth_total -= levels.back().prefix;
          levels.back().prefix = 0;
        } else if (t->getType() == KtpLexer::WHEN || t->getType() == KtpLexer::THEN ||
                   t->getType() == KtpLexer::KEY || t->getType() == KtpLexer::EXPECT ||
                   t->getType() == KtpLexer::PATTERN || t->getType() == KtpLexer::LET) {
          depth_total -= levels.back().prefix + levels.back().quant;
          levels.back().prefix = 0;
          levels.back().quant = 0;
        }
        if (depth_total > options_.max_nesting_depth) {
          TooDeep(TokenSpan(t));
          return false;
        }
      }
    }
  }
  return ok;
}

void Parse::OnSyntaxError(antlr4::Recognizer* recognizer, antlr4::Token* offending,
                          const std::string& msg) {
  had_syntax_error_ = true;
  if (offending != nullptr && reported_tokens_.count(offending)) return;  // lexer said it
  if (offending != nullptr) reported_tokens_.insert(offending);
  Span span = TokenSpan(offending);
  auto* parser = dynamic_cast<KtpParser*>(recognizer);
  std::string found = offending == nullptr || offending->getType() == antlr4::Token::EOF
                          ? "end of file"
                          : "`" + std::string(SpanText(span)) + "`";
  std::string help;
  std::vector<std::string> expected_names;
  if (parser != nullptr) {
    antlr4::misc::IntervalSet expected = parser->getExpectedTokens();
    std::vector<std::string> names;
    for (size_t type : expected.toList()) {
      names.push_back(DisplayToken(parser->getVocabulary(), type));
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    expected_names = names;
    if (!names.empty() && names.size() <= 8) {
      help = "expected ";
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0) help += i + 1 == names.size() ? " or " : ", ";
        help += names[i];
      }
    } else if (!names.empty()) {
      help = "expected one of " + std::to_string(names.size()) + " kinds of token here";
    }
  }
  std::string message = "unexpected " + found;
  if (msg.rfind("missing ", 0) == 0 && !expected_names.empty()) {
    // ANTLR inserted a token to recover: name what is missing.
    message = "missing " + (expected_names.size() == 1 ? expected_names[0] : "a token") +
              " before " + found;
  }
  sink_->Report(DiagId::kUnexpectedToken, path_, span, message, help);
}

bool DecodeEscapedChar(std::string_view body, std::size_t* i, std::string* out) {
  char c = body[*i];
  switch (c) {
    case 'n':
      *out += '\n';
      break;
    case 't':
      *out += '\t';
      break;
    case 'r':
      *out += '\r';
      break;
    case '\\':
      *out += '\\';
      break;
    case '"':
      *out += '"';
      break;
    case '0':
      *out += '\0';
      break;
    case 'u': {
      // \u{1F600}
      if (*i + 1 >= body.size() || body[*i + 1] != '{') return false;
      std::size_t close = body.find('}', *i + 2);
      if (close == std::string_view::npos || close == *i + 2 || close - (*i + 2) > 6) {
        return false;
      }
      uint32_t cp = 0;
      auto r = std::from_chars(body.data() + *i + 2, body.data() + close, cp, 16);
      if (r.ptr != body.data() + close || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return false;
      }
      if (cp < 0x80) {
        *out += static_cast<char>(cp);
      } else if (cp < 0x800) {
        *out += static_cast<char>(0xC0 | (cp >> 6));
        *out += static_cast<char>(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        *out += static_cast<char>(0xE0 | (cp >> 12));
        *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        *out += static_cast<char>(0x80 | (cp & 0x3F));
      } else {
        *out += static_cast<char>(0xF0 | (cp >> 18));
        *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        *out += static_cast<char>(0x80 | (cp & 0x3F));
      }
      *i = close;
      break;
    }
    default:
      return false;
  }
  return true;
}

}  // namespace

bool DecodeStringBody(std::string_view body, std::string* out, std::size_t* error_offset) {
  out->clear();
  for (std::size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\') {
      *out += body[i];
      continue;
    }
    std::size_t start = i;
    ++i;
    if (i >= body.size() || !DecodeEscapedChar(body, &i, out)) {
      *error_offset = start;
      return false;
    }
  }
  return true;
}

namespace {

void Parse::BuildAmountClause(KtpParser::AmountClauseContext* ctx, LimitClause* clause) {
  clause->kind = LimitClauseKind::kAmount;
  clause->word = BuildName(ctx->IDENT(0));
  antlr4::tree::TerminalNode* number = ctx->INT() != nullptr ? ctx->INT() : ctx->FLOAT();
  clause->amount_span = NodeSpan(number);
  clause->integral = ctx->INT() != nullptr;
  clause->value = std::strtod(number->getText().c_str(), nullptr);
  clause->amount = static_cast<int64_t>(clause->value);
  if (ctx->IDENT().size() > 1) clause->unit = BuildName(ctx->IDENT(1));
}

// `2.50/1M` → 2.5e-6 USD per token. The lexer admits only digits, one `.`,
// `/`, digits and an optional K or M, so what fails here is range alone.
std::unique_ptr<PriceDecl> Parse::BuildPrice(KtpParser::PriceDeclContext* ctx, Span span) {
  auto price = std::make_unique<PriceDecl>();
  price->span = span;
  price->name = BuildString(ctx->STRING());
  for (auto* child : ctx->children) {
    auto* term = dynamic_cast<antlr4::tree::TerminalNode*>(child);
    if (term == nullptr) continue;
    if (term->getText() == "{") price->open_span = NodeSpan(term);
    if (term->getText() == "}") price->close_span = NodeSpan(term);
  }
  for (auto* pc : ctx->priceClause()) {
    PriceClause c;
    c.span = CtxSpan(pc);
    c.word = BuildName(pc->IDENT());
    c.rate_text = pc->RATE()->getText();
    c.rate_span = NodeSpan(pc->RATE());
    std::size_t slash = c.rate_text.find('/');
    std::string per = c.rate_text.substr(slash + 1);
    double scale = 1;
    if (per.back() == 'K' || per.back() == 'M') {
      scale = per.back() == 'K' ? 1e3 : 1e6;
      per.pop_back();
    }
    double usd = std::strtod(c.rate_text.substr(0, slash).c_str(), nullptr);
    double tokens = std::strtod(per.c_str(), nullptr) * scale;
    c.valid = tokens >= 1 && std::isfinite(usd) && usd < 1e9;
    c.usd_per_token = c.valid ? usd / tokens : 0;
    if (!c.valid) {
      sink_->Report(DiagId::kInvalidNumber, path_, c.rate_span,
                    "price `" + c.rate_text + "` is out of range",
                    "write a price per a number of tokens: `2.50/1M`");
    }
    price->clauses.push_back(std::move(c));
  }
  return price;
}

StringLit Parse::BuildString(antlr4::tree::TerminalNode* node) {
  StringLit lit;
  if (node == nullptr) return lit;
  lit.present = true;
  lit.span = NodeSpan(node);
  std::string_view raw = SpanText(lit.span);
  std::string_view body = raw.substr(1, raw.size() - 2);
  std::size_t err = 0;
  if (!DecodeStringBody(body, &lit.value, &err)) {
    uint32_t at = lit.span.begin + 1 + static_cast<uint32_t>(err);
    sink_->Report(DiagId::kInvalidEscape, path_, Span{at, std::min(at + 2, lit.span.end - 1)},
                  "invalid escape sequence in string literal",
                  kEscapeHelp);
  }
  return lit;
}

Action Parse::BuildAction(KtpParser::ActionContext* ctx) {
  Action a;
  if (auto* b = dynamic_cast<KtpParser::BlockActionContext*>(ctx)) {
    a.kind = ActionKind::kBlock;
    a.keyword_span = NodeSpan(b->BLOCK());
    auto strings = b->STRING();
    std::size_t idx = 0;
    if (b->CODE() != nullptr) {
      // The code string is the one after the CODE token.
      if (strings.size() == 2) a.message = BuildString(strings[idx++]);
      a.code = BuildString(strings[idx]);
    } else if (!strings.empty()) {
      a.message = BuildString(strings[0]);
    }
  } else if (auto* f = dynamic_cast<KtpParser::FlagActionContext*>(ctx)) {
    a.kind = ActionKind::kFlag;
    a.keyword_span = NodeSpan(f->FLAG());
    auto strings = f->STRING();
    std::size_t idx = 0;
    if (f->CODE() != nullptr) {
      if (strings.size() == 2) a.message = BuildString(strings[idx++]);
      a.code = BuildString(strings[idx]);
    } else if (!strings.empty()) {
      a.message = BuildString(strings[0]);
    }
  } else if (auto* r = dynamic_cast<KtpParser::RedactActionContext*>(ctx)) {
    a.kind = ActionKind::kRedact;
    a.keyword_span = NodeSpan(r->REDACT());
    for (auto* item : r->redactItem()) {
      RedactItem ri;
      ri.span = CtxSpan(item);
      ri.pattern = BuildExpr(item->expr(), 1);
      ri.replacement = BuildString(item->STRING());
      a.items.push_back(std::move(ri));
    }
  }
  return a;
}

void Parse::BuildDecl(KtpParser::DeclContext* ctx) {
  Decl d;
  d.span = CtxSpan(ctx);
  if (auto* c = ctx->importDecl()) {
    d.kind = DeclKind::kImport;
    d.import = std::make_unique<Import>();
    Import& im = *d.import;
    im.span = d.span;
    if (c->STRING() != nullptr) {
      im.is_file = true;
      StringLit s = BuildString(c->STRING());
      im.target = s.value;
      im.target_span = s.span;
      std::string stem = im.target;
      if (auto slash = stem.find_last_of('/'); slash != std::string::npos) {
        stem = stem.substr(slash + 1);
      }
      if (auto dot = stem.rfind(".ktp"); dot != std::string::npos) stem = stem.substr(0, dot);
      im.alias = stem;
      im.alias_span = s.span;
    } else {
      im.target = c->dottedName()->getText();
      im.target_span = CtxSpan(c->dottedName());
      im.alias = im.target;
      im.alias_span = im.target_span;
    }
    if (c->AS() != nullptr) {
      im.alias = c->IDENT()->getText();
      im.alias_span = NodeSpan(c->IDENT());
    }
  } else if (auto* c = ctx->patternDecl()) {
    d.kind = DeclKind::kPattern;
    d.pattern = std::make_unique<PatternDecl>();
    d.pattern->span = d.span;
    d.pattern->name = BuildName(c->IDENT());
    d.pattern->value = BuildExpr(c->expr(), 1);
  } else if (auto* c = ctx->letDecl()) {
    d.kind = DeclKind::kLet;
    d.let = std::make_unique<LetDecl>();
    d.let->span = d.span;
    d.let->name = BuildName(c->IDENT());
    d.let->value = BuildExpr(c->expr(), 1);
  } else if (auto* c = ctx->policyDecl()) {
    d.kind = DeclKind::kPolicy;
    d.policy = std::make_unique<PolicyDecl>();
    PolicyDecl& p = *d.policy;
    p.span = d.span;
    p.name = BuildString(c->STRING());
    for (auto* child : c->children) {
      auto* term = dynamic_cast<antlr4::tree::TerminalNode*>(child);
      if (term == nullptr) continue;
      if (term->getText() == "{") p.open_span = NodeSpan(term);
      if (term->getText() == "}") p.close_span = NodeSpan(term);
    }
    for (auto* cc : c->policyClause()) {
      PolicyClause clause;
      clause.span = CtxSpan(cc);
      if (auto* on = dynamic_cast<KtpParser::OnClauseContext*>(cc)) {
        clause.kind = ClauseKind::kOn;
        for (auto* id : on->IDENT()) clause.names.push_back(BuildName(id));
      } else if (auto* mode = dynamic_cast<KtpParser::ModeClauseContext*>(cc)) {
        clause.kind = ClauseKind::kMode;
        clause.names.push_back(BuildName(mode->IDENT()));
      } else if (auto* when = dynamic_cast<KtpParser::WhenClauseContext*>(cc)) {
        clause.kind = ClauseKind::kWhen;
        clause.condition = BuildExpr(when->expr(), 1);
      } else if (auto* then = dynamic_cast<KtpParser::ThenClauseContext*>(cc)) {
        clause.kind = ClauseKind::kThen;
        clause.action = BuildAction(then->action());
      }
      p.clauses.push_back(std::move(clause));
    }
  } else if (auto* c = ctx->limitDecl()) {
    d.kind = DeclKind::kLimit;
    d.limit = std::make_unique<LimitDecl>();
    LimitDecl& l = *d.limit;
    l.budget = c->BUDGET() != nullptr;
    l.span = d.span;
    l.name = BuildString(c->STRING());
    for (auto* child : c->children) {
      auto* term = dynamic_cast<antlr4::tree::TerminalNode*>(child);
      if (term == nullptr) continue;
      if (term->getText() == "{") l.open_span = NodeSpan(term);
      if (term->getText() == "}") l.close_span = NodeSpan(term);
    }
    for (auto* cc : c->limitClause()) {
      LimitClause clause;
      clause.span = CtxSpan(cc);
      antlr4::tree::TerminalNode* amount = nullptr;
      antlr4::tree::TerminalNode* unit = nullptr;
      if (auto* k = dynamic_cast<KtpParser::KeyClauseContext*>(cc)) {
        clause.kind = LimitClauseKind::kKey;
        clause.expr = BuildExpr(k->expr(), 1);
      } else if (auto* w = dynamic_cast<KtpParser::LimitWhenClauseContext*>(cc)) {
        clause.kind = LimitClauseKind::kWhen;
        clause.expr = BuildExpr(w->expr(), 1);
      } else if (auto* r = dynamic_cast<KtpParser::RequestsClauseContext*>(cc)) {
        clause.kind = LimitClauseKind::kRequests;
        amount = r->INT();
        unit = r->IDENT();
      } else if (auto* t = dynamic_cast<KtpParser::TokensClauseContext*>(cc)) {
        clause.kind = LimitClauseKind::kTokens;
        amount = t->INT();
        unit = t->IDENT();
      } else if (auto* a = dynamic_cast<KtpParser::AmountClauseContext*>(cc)) {
        BuildAmountClause(a, &clause);
      }
      if (amount != nullptr) {
        clause.amount_span = NodeSpan(amount);
        std::string digits = amount->getText();
        auto r = std::from_chars(digits.data(), digits.data() + digits.size(), clause.amount);
        if (r.ec != std::errc()) {
          sink_->Report(DiagId::kInvalidNumber, path_, clause.amount_span,
                        "integer `" + digits + "` is out of range",
                        "the largest integer is 9223372036854775807");
        }
        clause.unit = BuildName(unit);
      }
      l.clauses.push_back(std::move(clause));
    }
  } else if (auto* c = ctx->priceDecl()) {
    d.kind = DeclKind::kPrice;
    d.price = BuildPrice(c, d.span);
  } else if (auto* c = ctx->testDecl()) {
    d.kind = DeclKind::kTest;
    d.test = std::make_unique<TestDecl>();
    TestDecl& t = *d.test;
    t.span = d.span;
    t.name = BuildString(c->STRING());
    for (auto* child : c->children) {
      auto* term = dynamic_cast<antlr4::tree::TerminalNode*>(child);
      if (term == nullptr) continue;
      if (term->getText() == "{") t.open_span = NodeSpan(term);
      if (term->getText() == "}") t.close_span = NodeSpan(term);
    }
    for (auto* cc : c->testClause()) {
      TestClause clause;
      clause.span = CtxSpan(cc);
      if (auto* g = dynamic_cast<KtpParser::GivenClauseContext*>(cc)) {
        clause.given = BuildName(g->IDENT());
        clause.value = BuildExpr(g->expr(), 1);
      } else if (auto* e = dynamic_cast<KtpParser::ExpectClauseContext*>(cc)) {
        clause.is_expect = true;
        auto* x = e->expectation();
        if (dynamic_cast<KtpParser::ExpectAllowContext*>(x) != nullptr) {
          clause.expect = ExpectKind::kAllow;
        } else if (auto* b = dynamic_cast<KtpParser::ExpectBlockContext*>(x)) {
          clause.expect = ExpectKind::kBlock;
          auto strings = b->STRING();
          clause.policy = BuildString(strings[0]);
          if (strings.size() > 1) clause.code = BuildString(strings[1]);
        } else if (auto* r = dynamic_cast<KtpParser::ExpectRedactContext*>(x)) {
          clause.expect = ExpectKind::kRedact;
          clause.policy = BuildString(r->STRING());
        } else if (auto* f = dynamic_cast<KtpParser::ExpectFlagContext*>(x)) {
          clause.expect = ExpectKind::kFlag;
          clause.policy = BuildString(f->STRING());
        } else if (auto* v = dynamic_cast<KtpParser::ExpectValueContext*>(x)) {
          clause.expect = ExpectKind::kValue;
          clause.value = BuildExpr(v->expr(), 1);
          clause.expected = BuildString(v->STRING());
        }
      }
      t.clauses.push_back(std::move(clause));
    }
  } else if (auto* c = ctx->providerDecl()) {
    d.kind = DeclKind::kProvider;
    d.provider = std::make_unique<ProviderDecl>();
    ProviderDecl& p = *d.provider;
    p.span = d.span;
    p.name = BuildName(c->IDENT());
    for (auto* child : c->children) {
      auto* term = dynamic_cast<antlr4::tree::TerminalNode*>(child);
      if (term == nullptr) continue;
      if (term->getText() == "{") p.open_span = NodeSpan(term);
      if (term->getText() == "}") p.close_span = NodeSpan(term);
    }
    for (auto* f : c->field()) {
      ProviderField pf;
      pf.span = CtxSpan(f);
      pf.name = FieldKey(f);
      pf.value = BuildExpr(f->expr(), 1);
      p.fields.push_back(std::move(pf));
    }
  }
  file_->decls.push_back(std::move(d));
}

// True for the left-recursive alternatives whose left operand is expr(0).
KtpParser::ExprContext* LeftOperand(KtpParser::ExprContext* ctx) {
  if (auto* c = dynamic_cast<KtpParser::FieldExprContext*>(ctx)) return c->expr();
  if (auto* c = dynamic_cast<KtpParser::IndexExprContext*>(ctx)) return c->expr(0);
  if (auto* c = dynamic_cast<KtpParser::CastExprContext*>(ctx)) return c->expr();
  if (auto* c = dynamic_cast<KtpParser::UnionExprContext*>(ctx)) return c->expr(0);
  if (auto* c = dynamic_cast<KtpParser::CoalesceExprContext*>(ctx)) return c->expr(0);
  if (auto* c = dynamic_cast<KtpParser::CompareExprContext*>(ctx)) return c->expr(0);
  if (auto* c = dynamic_cast<KtpParser::InExprContext*>(ctx)) return c->expr(0);
  if (auto* c = dynamic_cast<KtpParser::MatchExprContext*>(ctx)) return c->expr(0);
  if (auto* c = dynamic_cast<KtpParser::AndExprContext*>(ctx)) return c->expr(0);
  if (auto* c = dynamic_cast<KtpParser::OrExprContext*>(ctx)) return c->expr(0);
  return nullptr;
}

ExprPtr Parse::BuildExpr(KtpParser::ExprContext* ctx, int depth) {
  if (failed_) return NewExpr(ExprKind::kNull, Span{});
  if (depth > options_.max_nesting_depth) return TooDeep(CtxSpan(ctx));

  // Collect the left spine of operator alternatives, outermost first.
  std::vector<KtpParser::ExprContext*> spine;
  KtpParser::ExprContext* leaf = ctx;
  while (KtpParser::ExprContext* left = LeftOperand(leaf)) {
    spine.push_back(leaf);
    leaf = left;
  }

  ExprPtr node;
  // n-ary chains (and, or, |, ??) add one level however long they are.
  int node_depth = depth;
  bool counted_nary = false;
  for (KtpParser::ExprContext* op : spine) {
    bool nary = dynamic_cast<KtpParser::AndExprContext*>(op) != nullptr ||
                dynamic_cast<KtpParser::OrExprContext*>(op) != nullptr ||
                dynamic_cast<KtpParser::UnionExprContext*>(op) != nullptr ||
                dynamic_cast<KtpParser::CoalesceExprContext*>(op) != nullptr;
    if (!nary || !counted_nary) ++node_depth;
    counted_nary = counted_nary || nary;
  }
  if (auto* p = dynamic_cast<KtpParser::PrimaryExprContext*>(leaf)) {
    node = BuildPrimary(p->primary(), node_depth);
  } else if (auto* n = dynamic_cast<KtpParser::NotExprContext*>(leaf)) {
    node = NewExpr(ExprKind::kNot, CtxSpan(n));
    node->children.push_back(BuildExpr(n->expr(), node_depth + 1));
  } else if (auto* n = dynamic_cast<KtpParser::NegExprContext*>(leaf)) {
    node = NewExpr(ExprKind::kNeg, CtxSpan(n));
    node->children.push_back(BuildExpr(n->expr(), node_depth + 1));
  } else if (auto* q = dynamic_cast<KtpParser::QuantExprContext*>(leaf)) {
    node = NewExpr(ExprKind::kQuant, CtxSpan(q));
    node->bool_value = q->quant->getType() == KtpParser::ALL;
    node->text = q->IDENT()->getText();
    node->text_span = NodeSpan(q->IDENT());
    node->children.push_back(BuildExpr(q->expr(0), node_depth + 1));
    node->children.push_back(BuildExpr(q->expr(1), node_depth + 1));
  } else {
    node = NewExpr(ExprKind::kNull, CtxSpan(leaf));
  }
  if (failed_) return node;

  // Rebuild from the innermost operator outwards.
  for (auto it = spine.rbegin(); it != spine.rend(); ++it) {
    KtpParser::ExprContext* op = *it;
    Span span = CtxSpan(op);
    ExprKind nary = ExprKind::kNull;
    KtpParser::ExprContext* right = nullptr;
    if (auto* c = dynamic_cast<KtpParser::AndExprContext*>(op)) {
      nary = ExprKind::kAnd;
      right = c->expr(1);
    } else if (auto* c = dynamic_cast<KtpParser::OrExprContext*>(op)) {
      nary = ExprKind::kOr;
      right = c->expr(1);
    } else if (auto* c = dynamic_cast<KtpParser::UnionExprContext*>(op)) {
      nary = ExprKind::kUnion;
      right = c->expr(1);
    } else if (auto* c = dynamic_cast<KtpParser::CoalesceExprContext*>(op)) {
      nary = ExprKind::kCoalesce;
      right = c->expr(1);
    }
    if (nary != ExprKind::kNull) {
      ExprPtr rhs = BuildExpr(right, node_depth);
      if (node->kind == nary) {
        node->span = span;
        node->children.push_back(std::move(rhs));
      } else {
        ExprPtr parent = NewExpr(nary, span);
        parent->children.push_back(std::move(node));
        parent->children.push_back(std::move(rhs));
        node = std::move(parent);
      }
      if (failed_) return node;
      continue;
    }
    ExprPtr parent;
    if (auto* c = dynamic_cast<KtpParser::FieldExprContext*>(op)) {
      parent = NewExpr(ExprKind::kField, span);
      parent->text = c->fieldName()->getText();
      parent->text_span = CtxSpan(c->fieldName());
      parent->children.push_back(std::move(node));
    } else if (auto* c = dynamic_cast<KtpParser::IndexExprContext*>(op)) {
      parent = NewExpr(ExprKind::kIndex, span);
      parent->children.push_back(std::move(node));
      parent->children.push_back(BuildExpr(c->expr(1), node_depth));
    } else if (auto* c = dynamic_cast<KtpParser::CastExprContext*>(op)) {
      parent = NewExpr(ExprKind::kCast, span);
      parent->text = c->IDENT()->getText();
      parent->text_span = NodeSpan(c->IDENT());
      parent->children.push_back(std::move(node));
    } else if (auto* c = dynamic_cast<KtpParser::CompareExprContext*>(op)) {
      parent = NewExpr(ExprKind::kCompare, span);
      parent->text = c->op->getText();
      parent->text_span = TokenSpan(c->op);
      parent->children.push_back(std::move(node));
      parent->children.push_back(BuildExpr(c->expr(1), node_depth));
    } else if (auto* c = dynamic_cast<KtpParser::InExprContext*>(op)) {
      parent = NewExpr(ExprKind::kIn, span);
      parent->bool_value = c->NOT() != nullptr;
      parent->text = parent->bool_value ? "not in" : "in";
      parent->text_span = NodeSpan(c->IN());
      parent->children.push_back(std::move(node));
      parent->children.push_back(BuildExpr(c->expr(1), node_depth));
    } else if (auto* c = dynamic_cast<KtpParser::MatchExprContext*>(op)) {
      parent = NewExpr(ExprKind::kMatch, span);
      parent->text = c->op->getText();
      parent->text_span = TokenSpan(c->op);
      parent->children.push_back(std::move(node));
      parent->children.push_back(BuildExpr(c->expr(1), node_depth));
    }
    node = std::move(parent);
    --node_depth;
    if (failed_) return node;
  }
  return node;
}

ExprPtr Parse::BuildPrimary(KtpParser::PrimaryContext* ctx, int depth) {
  Span span = CtxSpan(ctx);
  if (depth > options_.max_nesting_depth) return TooDeep(span);
  if (auto* c = dynamic_cast<KtpParser::IntLitContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kInt, span);
    e->text = c->getText();
    auto r = std::from_chars(e->text.data(), e->text.data() + e->text.size(), e->int_value);
    if (r.ec != std::errc()) {
      sink_->Report(DiagId::kInvalidNumber, path_, span, "integer `" + e->text + "` is out of range",
                    "the largest integer is 9223372036854775807");
    }
    return e;
  }
  if (auto* c = dynamic_cast<KtpParser::FloatLitContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kFloat, span);
    e->text = c->getText();
    e->float_value = std::strtod(e->text.c_str(), nullptr);
    if (!std::isfinite(e->float_value)) {
      sink_->Report(DiagId::kInvalidNumber, path_, span, "number `" + e->text + "` is out of range");
    }
    return e;
  }
  if (auto* c = dynamic_cast<KtpParser::DurationLitContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kDuration, span);
    e->text = c->getText();
    std::size_t digits = e->text.find_first_not_of("0123456789");
    std::string unit = e->text.substr(digits);
    int64_t n = 0;
    auto r = std::from_chars(e->text.data(), e->text.data() + digits, n);
    int64_t scale = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : 3600000;
    if (r.ec != std::errc() || n > INT64_MAX / scale) {
      sink_->Report(DiagId::kInvalidNumber, path_, span,
                    "duration `" + e->text + "` is out of range");
    } else {
      e->int_value = n * scale;
    }
    return e;
  }
  if (auto* c = dynamic_cast<KtpParser::StringLitContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kString, span);
    e->text = BuildString(c->STRING()).value;
    return e;
  }
  if (dynamic_cast<KtpParser::IstringLitContext*>(ctx) != nullptr) {
    ExprPtr e = NewExpr(ExprKind::kIString, span);
    std::string_view raw = SpanText(span);
    std::string_view body = raw.substr(1, raw.size() - 3);
    std::size_t err = 0;
    if (!DecodeStringBody(body, &e->text, &err)) {
      uint32_t at = span.begin + 1 + static_cast<uint32_t>(err);
      sink_->Report(DiagId::kInvalidEscape, path_, Span{at, at + 2},
                    "invalid escape sequence in string literal",
                    kEscapeHelp);
    }
    return e;
  }
  if (dynamic_cast<KtpParser::RegexLitContext*>(ctx) != nullptr) {
    ExprPtr e = NewExpr(ExprKind::kRegex, span);
    std::string_view raw = SpanText(span);
    std::size_t close = raw.find_last_of('/');
    e->text = std::string(raw.substr(1, close - 1));
    e->flags = std::string(raw.substr(close + 1));
    e->text_span = Span{span.begin + 1, span.begin + static_cast<uint32_t>(close)};
    return e;
  }
  if (auto* c = dynamic_cast<KtpParser::BoolLitContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kBool, span);
    e->bool_value = c->KW_TRUE() != nullptr;
    e->text = e->bool_value ? "true" : "false";
    return e;
  }
  if (dynamic_cast<KtpParser::NullLitContext*>(ctx) != nullptr) {
    return NewExpr(ExprKind::kNull, span);
  }
  if (auto* c = dynamic_cast<KtpParser::CallExprContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kCall, span);
    e->text = c->IDENT()->getText();
    e->text_span = NodeSpan(c->IDENT());
    for (auto* arg : c->expr()) e->children.push_back(BuildExpr(arg, depth + 1));
    return e;
  }
  if (auto* c = dynamic_cast<KtpParser::NameExprContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kName, span);
    e->text = c->IDENT()->getText();
    e->text_span = span;
    return e;
  }
  if (auto* c = dynamic_cast<KtpParser::ParenExprContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kParen, span);
    e->children.push_back(BuildExpr(c->expr(), depth + 1));
    return e;
  }
  if (auto* c = dynamic_cast<KtpParser::ListLitContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kList, span);
    for (auto* item : c->expr()) e->children.push_back(BuildExpr(item, depth + 1));
    return e;
  }
  if (auto* c = dynamic_cast<KtpParser::ObjectLitContext*>(ctx)) {
    ExprPtr e = NewExpr(ExprKind::kObject, span);
    for (auto* f : c->field()) {
      Name key = FieldKey(f);
      e->keys.push_back(key.text);
      e->key_spans.push_back(key.span);
      e->children.push_back(BuildExpr(f->expr(), depth + 1));
    }
    return e;
  }
  return NewExpr(ExprKind::kNull, span);
}

std::unique_ptr<FileAst> Parse::Run() {
  file_ = std::make_unique<FileAst>();
  file_->path = path_;
  if (text_.size() > options_.max_file_bytes) {
    sink_->Report(DiagId::kFileTooLarge, path_, Span{0, 0},
                  "file is " + std::to_string(text_.size()) + " bytes; the limit is " +
                      std::to_string(options_.max_file_bytes),
                  "split the policies into several files, or raise `--max-file-bytes`");
    return nullptr;
  }
  if (std::size_t bad = FindInvalidUtf8(text_); bad != std::string_view::npos) {
    auto at = static_cast<uint32_t>(bad);
    sink_->Report(DiagId::kInvalidUtf8, path_, Span{at, at + 1},
                  "invalid UTF-8 byte sequence at byte " + std::to_string(bad),
                  "save the file as UTF-8");
    return nullptr;
  }
  BuildOffsetTable();

  // Spans stay offsets into the whole text, mark included.
  antlr4::ANTLRInputStream input(text_.data() + BomLength(), text_.size() - BomLength());
  KtpLexer lexer(&input);
  lexer.removeErrorListeners();
  antlr4::CommonTokenStream tokens(&lexer);
  try {
    tokens.fill();
  } catch (const std::exception& e) {
    sink_->Report(DiagId::kInvalidCharacter, path_, Span{0, 0},
                  std::string("the lexer failed: ") + e.what());
    return nullptr;
  }
  bool lex_ok = ScanTokens(&tokens);
  if (failed_) return nullptr;  // too deep to hand to a recursive parser

  KtpParser parser(&tokens);
  parser.removeErrorListeners();
  KtpParser::FileContext* tree = nullptr;
  // Stage 1: SLL with bail-out. Exceptions end it; they never escape.
  parser.getInterpreter<antlr4::atn::ParserATNSimulator>()->setPredictionMode(
      antlr4::atn::PredictionMode::SLL);
  parser.setErrorHandler(std::make_shared<antlr4::BailErrorStrategy>());
  try {
    tree = parser.file();
  } catch (const std::exception&) {
    tree = nullptr;
  }
  if (tree == nullptr || !lex_ok) {
    // Stage 2: full LL with recovery, reporting every error it finds.
    tokens.seek(0);
    parser.reset();
    ErrorListener listener(this);
    parser.addErrorListener(&listener);
    parser.setErrorHandler(std::make_shared<antlr4::DefaultErrorStrategy>());
    parser.getInterpreter<antlr4::atn::ParserATNSimulator>()->setPredictionMode(
        antlr4::atn::PredictionMode::LL);
    try {
      tree = parser.file();
    } catch (const std::exception& e) {
      sink_->Report(DiagId::kUnexpectedToken, path_, Span{0, 0},
                    std::string("the parser failed: ") + e.what());
    }
    parser.removeErrorListeners();
    if (!had_syntax_error_ && lex_ok) {
      // SLL can fail where LL succeeds (a true ambiguity): keep LL's tree.
      had_syntax_error_ = tree == nullptr;
    }
  }
  if (had_syntax_error_ || !lex_ok || tree == nullptr) return nullptr;

  int errors_before = sink_->error_count();
  for (auto* decl : tree->decl()) {
    BuildDecl(decl);
    if (failed_) return nullptr;
  }
  if (sink_->error_count() > errors_before) return nullptr;
  return std::move(file_);
}

}  // namespace

std::unique_ptr<FileAst> ParseFile(const std::string& path, std::string_view text,
                                   const Options& options, DiagnosticSink* sink) {
  Parse parse(path, text, options, sink);
  return parse.Run();
}

}  // namespace kt::internal
