// The runtime side of policy programs: the helpers generated code calls, and
// the RequestView the engine fills for it.
//
// Every helper mirrors one case of the interpreter (test_runner.cc), so the
// two agree value for value; the conformance corpus checks that they do.
// Helpers never throw into generated code (it has no unwind tables): a
// failure is recorded in the run and reported when the stage returns.
#include <algorithm>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "compiler/internal/codegen.h"

namespace kt::internal {
namespace {

using abi::Value;

NativeRun& RunOf(abi::Frame* f) { return *static_cast<NativeRun*>(f->runtime); }

Value Make(uint32_t tag, uint64_t a = 0, uint64_t b = 0) {
  Value v;
  v.tag = tag;
  v.a = a;
  v.b = b;
  return v;
}
Value MakeStr(const char* data, uint64_t size) {
  return Make(abi::kStr, reinterpret_cast<uint64_t>(data), size);
}
Value MakeStr(const abi::Str& s) { return MakeStr(s.data, s.size); }
Value MakeStr(const std::string& s) { return MakeStr(s.data(), s.size()); }
Value MakeFloat(double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  return Make(abi::kFloat, bits);
}
double FloatOf(const Value& v) {
  if (v.tag == abi::kInt) return static_cast<double>(static_cast<int64_t>(v.a));
  double d;
  std::memcpy(&d, &v.a, sizeof d);
  return d;
}
bool IsNumber(const Value& v) { return v.tag == abi::kInt || v.tag == abi::kFloat; }
std::string_view TextOf(const Value& v) {
  if (v.tag != abi::kStr) return {};
  return {reinterpret_cast<const char*>(v.a), v.b};
}
const Json* JsonOf(const Value& v) { return reinterpret_cast<const Json*>(v.a); }

// A JSON value as policies see it: scalars by value, texts in place.
Value FromJson(const Json* j) {
  if (j == nullptr || j->is_null()) return Make(abi::kNull);
  if (j->is_boolean()) return Make(abi::kBool, j->get<bool>() ? 1 : 0);
  if (j->is_number_integer()) return Make(abi::kInt, static_cast<uint64_t>(j->get<int64_t>()));
  if (j->is_number()) return MakeFloat(j->get<double>());
  if (j->is_string()) return MakeStr(j->get_ref<const std::string&>());
  return Make(abi::kJson, reinterpret_cast<uint64_t>(j));
}

Value ZeroValue(uint32_t zero) {
  switch (zero) {
    case abi::kZeroStr:
      return MakeStr("", 0);
    case abi::kZeroInt:
      return Make(abi::kInt, 0);
    case abi::kZeroFloat:
      return MakeFloat(0);
    case abi::kZeroBool:
      return Make(abi::kBool, 0);
    case abi::kZeroList:
      return Make(abi::kValues, 0, 0);
    default:
      return Make(abi::kNull);
  }
}

Value Optional(uint8_t has, const abi::Str& s) { return has ? MakeStr(s) : Make(abi::kNull); }

uint64_t ListLen(const Value& v) {
  switch (v.tag) {
    case abi::kMessages:
    case abi::kToolDefs:
    case abi::kValues:
      return v.b;
    case abi::kJson:
      return JsonOf(v)->is_array() ? JsonOf(v)->size() : 0;
    default:
      return 0;
  }
}

Value ListAt(const Value& v, uint64_t i) {
  switch (v.tag) {
    case abi::kMessages:
      return Make(abi::kMessage, v.a + i * sizeof(abi::MessageView));
    case abi::kToolDefs:
      return Make(abi::kToolDef, v.a + i * sizeof(abi::ToolDefView));
    case abi::kValues:
      return reinterpret_cast<const Value*>(v.a)[i];
    default:
      return FromJson(&(*JsonOf(v))[i]);
  }
}

// The JSON a value stands for (only comparisons of lists and records need
// it: scalars are compared directly).
Json ToJson(const Value& v) {
  auto str = [](const abi::Str& s) { return Json(std::string(s.data, s.size)); };
  switch (v.tag) {
    case abi::kBool:
      return v.a != 0;
    case abi::kInt:
      return static_cast<int64_t>(v.a);
    case abi::kFloat:
      return FloatOf(v);
    case abi::kStr:
      return std::string(TextOf(v));
    case abi::kJson:
      return *JsonOf(v);
    case abi::kMessage: {
      const auto& m = *reinterpret_cast<const abi::MessageView*>(v.a);
      Json o = {{"role", str(m.role)}, {"content", str(m.content)}};
      if (m.has_name) o["name"] = str(m.name);
      if (m.has_tool_call_id) o["tool_call_id"] = str(m.tool_call_id);
      return o;
    }
    case abi::kToolDef: {
      const auto& t = *reinterpret_cast<const abi::ToolDefView*>(v.a);
      Json o = {{"name", str(t.name)}};
      if (t.has_description) o["description"] = str(t.description);
      if (t.parameters != nullptr) o["parameters"] = *static_cast<const Json*>(t.parameters);
      return o;
    }
    case abi::kMessages:
    case abi::kToolDefs:
    case abi::kValues: {
      Json a = Json::array();
      for (uint64_t i = 0; i < v.b; ++i) a.push_back(ToJson(ListAt(v, i)));
      return a;
    }
    default:
      return nullptr;
  }
}

bool IsScalar(uint32_t tag) { return tag <= abi::kStr; }

bool Equal(const Value& l, const Value& r) {
  if (IsNumber(l) && IsNumber(r)) return FloatOf(l) == FloatOf(r);
  if (IsScalar(l.tag) && IsScalar(r.tag)) {
    if (l.tag != r.tag) return false;
    if (l.tag == abi::kStr) return TextOf(l) == TextOf(r);
    return l.tag == abi::kNull || l.a == r.a;
  }
  return ToJson(l) == ToJson(r);
}

}  // namespace
}  // namespace kt::internal

// The helpers, with C linkage: generated code calls them by these names.
extern "C" {

using kt::abi::Frame;
using kt::abi::Value;
namespace ki = kt::internal;
namespace abi = kt::abi;

void kt_rt_field(Frame* f, Value* out, const Value* base, uint32_t field, const char* key,
                 int64_t key_size, uint32_t zero) {
  (void)f;
  using ki::MakeStr;
  using ki::Optional;
  const abi::RequestView* view = reinterpret_cast<const abi::RequestView*>(base->a);
  switch (base->tag) {
    case abi::kFail:
      *out = ki::Make(abi::kFail);
      return;
    case abi::kRequest:
      switch (field) {
        case abi::kFieldModel:
          *out = MakeStr(view->model);
          return;
        case abi::kFieldMessages:
          *out = ki::Make(abi::kMessages, reinterpret_cast<uint64_t>(view->messages), view->message_count);
          return;
        case abi::kFieldTools:
          *out = ki::Make(abi::kToolDefs, reinterpret_cast<uint64_t>(view->tools), view->tool_count);
          return;
        case abi::kFieldUser:
          *out = Optional(view->has_user, view->user);
          return;
        case abi::kFieldStream:
          *out = ki::Make(abi::kBool, view->stream);
          return;
        case abi::kFieldMaxTokens:
          *out = view->has_max_tokens ? ki::Make(abi::kInt, static_cast<uint64_t>(view->max_tokens))
                                      : ki::Make(abi::kNull);
          return;
        case abi::kFieldTemperature:
          *out = view->has_temperature ? ki::MakeFloat(view->temperature) : ki::Make(abi::kNull);
          return;
        case abi::kFieldMetadata:
          *out = ki::FromJson(static_cast<const ki::Json*>(view->metadata));
          return;
      }
      break;
    case abi::kTool:
      switch (field) {
        case abi::kFieldName:
          *out = MakeStr(view->tool_name);
          return;
        case abi::kFieldArgs:
          *out = ki::FromJson(static_cast<const ki::Json*>(view->tool_args));
          return;
        case abi::kFieldIndex:
          *out = ki::Make(abi::kInt, static_cast<uint64_t>(view->tool_index));
          return;
        case abi::kFieldId:
          *out = MakeStr(view->tool_id);
          return;
      }
      break;
    case abi::kOutput:
      switch (field) {
        case abi::kFieldText:
          *out = MakeStr(view->output_text);
          return;
        case abi::kFieldFinishReason:
          *out = Optional(view->has_finish_reason, view->finish_reason);
          return;
        case abi::kFieldModel:
          *out = MakeStr(view->output_model);
          return;
      }
      break;
    case abi::kMessage: {
      const auto& m = *reinterpret_cast<const abi::MessageView*>(base->a);
      switch (field) {
        case abi::kFieldRole:
          *out = MakeStr(m.role);
          return;
        case abi::kFieldContent:
          *out = MakeStr(m.content);
          return;
        case abi::kFieldName:
          *out = Optional(m.has_name, m.name);
          return;
        case abi::kFieldToolCallId:
          *out = Optional(m.has_tool_call_id, m.tool_call_id);
          return;
      }
      break;
    }
    case abi::kToolDef: {
      const auto& t = *reinterpret_cast<const abi::ToolDefView*>(base->a);
      switch (field) {
        case abi::kFieldName:
          *out = MakeStr(t.name);
          return;
        case abi::kFieldDescription:
          *out = Optional(t.has_description, t.description);
          return;
        case abi::kFieldParameters:
          *out = ki::FromJson(static_cast<const ki::Json*>(t.parameters));
          return;
      }
      break;
    }
    case abi::kJson: {
      const ki::Json& j = *ki::JsonOf(*base);
      if (j.is_object()) {
        auto it = j.find(std::string(key, static_cast<std::size_t>(key_size)));
        if (it != j.end()) {
          *out = ki::FromJson(&*it);
          return;
        }
      }
      break;
    }
  }
  *out = ki::ZeroValue(zero);
}

void kt_rt_index(Frame* f, Value* out, const Value* base, const Value* index, uint32_t zero) {
  (void)f;
  if (base->tag == abi::kFail || index->tag == abi::kFail) {
    *out = ki::Make(abi::kFail);
    return;
  }
  if (index->tag == abi::kInt && base->tag != abi::kJson) {
    int64_t i = static_cast<int64_t>(index->a);
    if (i >= 0 && static_cast<uint64_t>(i) < ki::ListLen(*base)) {
      *out = ki::ListAt(*base, static_cast<uint64_t>(i));
      return;
    }
  } else if (base->tag == abi::kJson) {
    const ki::Json& j = *ki::JsonOf(*base);
    if (j.is_array() && index->tag == abi::kInt) {
      int64_t i = static_cast<int64_t>(index->a);
      if (i >= 0 && static_cast<uint64_t>(i) < j.size()) {
        *out = ki::FromJson(&j[static_cast<std::size_t>(i)]);
        return;
      }
    } else if (j.is_object() && index->tag == abi::kStr) {
      auto it = j.find(std::string(ki::TextOf(*index)));
      if (it != j.end()) {
        *out = ki::FromJson(&*it);
        return;
      }
    }
  }
  *out = ki::ZeroValue(zero);
}

void kt_rt_cast(Frame* f, Value* out, const Value* v, uint32_t target) {
  (void)f;
  const uint32_t t = v->tag;
  if ((target == 0 && t == abi::kStr) || (target == 1 && t == abi::kInt) ||
      (target == 3 && t == abi::kBool) || (target == 2 && t == abi::kFloat)) {
    *out = *v;
  } else if (target == 2 && t == abi::kInt) {
    *out = ki::MakeFloat(ki::FloatOf(*v));
  } else {
    *out = ki::Make(abi::kFail);  // a failed conversion: the condition is false
  }
}

void kt_rt_neg(Frame* f, Value* out, const Value* v) {
  if (v->tag == abi::kFail) {
    *out = *v;
  } else if (v->tag == abi::kInt) {
    *out = ki::Make(abi::kInt, static_cast<uint64_t>(-static_cast<int64_t>(v->a)));
  } else if (v->tag == abi::kFloat) {
    *out = ki::MakeFloat(-ki::FloatOf(*v));
  } else {
    ki::NativeRun& run = ki::RunOf(f);
    run.failed = true;
    run.error = "evaluation failed: negation of a value that is not a number";
    *out = ki::Make(abi::kFail);
  }
}

uint32_t kt_rt_compare(Frame* f, const Value* l, const Value* r, uint32_t op) {
  (void)f;
  if (op <= 1) return ki::Equal(*l, *r) == (op == 0) ? 1 : 0;
  if (!ki::IsNumber(*l) || !ki::IsNumber(*r)) return 0;
  double a = ki::FloatOf(*l), b = ki::FloatOf(*r);
  switch (op) {
    case 2:
      return a < b;
    case 3:
      return a <= b;
    case 4:
      return a > b;
    default:
      return a >= b;
  }
}

uint32_t kt_rt_in(Frame* f, const Value* item, const Value* list) {
  (void)f;
  if (list->tag == abi::kJson && !ki::JsonOf(*list)->is_array()) return 0;
  const uint64_t n = ki::ListLen(*list);
  for (uint64_t i = 0; i < n; ++i) {
    if (ki::Equal(*item, ki::ListAt(*list, i))) return 1;
  }
  return 0;
}

uint32_t kt_rt_match(Frame* f, const Value* subject, uint32_t set, uint32_t full) {
  ki::NativeRun& run = ki::RunOf(f);
  const kt::PatternSet* ps = run.program->set(set);
  if (ps == nullptr) {
    run.failed = true;
    run.error = run.program->set_error(set);
    return 0;
  }
  std::string_view text = ki::TextOf(*subject);
  if (!full) return run.program->Occurs(&run, set, text) ? 1 : 0;
  // The leftmost-longest match from 0 covers the text iff any does.
  kt::PatternMatch m;
  return ps->FirstMatch(text, 0, &m) && m.start == 0 && m.end == text.size() ? 1 : 0;
}

uint32_t kt_rt_text_op(Frame* f, const Value* l, const Value* r, uint32_t op) {
  (void)f;
  std::string_view text = ki::TextOf(*l);
  std::string_view needle = ki::TextOf(*r);
  switch (op) {
    case 0:
      return text.find(needle) != std::string_view::npos;
    case 1:
      return text.substr(0, needle.size()) == needle;
    default:
      return text.size() >= needle.size() && text.substr(text.size() - needle.size()) == needle;
  }
}

int64_t kt_rt_list_len(Frame* f, const Value* list) {
  (void)f;
  return static_cast<int64_t>(ki::ListLen(*list));
}

void kt_rt_list_at(Frame* f, Value* out, const Value* list, int64_t i) {
  (void)f;
  *out = ki::ListAt(*list, static_cast<uint64_t>(i));
}

uint32_t kt_rt_fire(Frame* f, uint32_t rule) {
  ki::NativeRun& run = ki::RunOf(f);
  try {
    return run.fire(run.fire_arg, rule) ? 1 : 0;
  } catch (const std::exception& e) {
    run.failed = true;
    run.error = e.what();
    return 1;
  }
}

void kt_rt_count(Frame* f, Value* out, const Value* subject, uint32_t set) {
  ki::NativeRun& run = ki::RunOf(f);
  const kt::PatternSet* ps = run.program->set(set);
  if (ps == nullptr) {
    run.failed = true;
    run.error = run.program->set_error(set);
    *out = ki::Make(abi::kFail);
    return;
  }
  // Non-overlapping leftmost-longest matches, as the interpreter counts them.
  uint64_t n = ps->AllMatches(ki::TextOf(*subject)).size();
  *out = ki::Make(abi::kInt, n);
}

void kt_rt_len(Frame* f, Value* out, const Value* v) {
  (void)f;
  uint64_t n = 0;
  if (v->tag == abi::kStr) {
    n = v->b;
  } else if (v->tag != abi::kJson || ki::JsonOf(*v)->is_array()) {
    n = ki::ListLen(*v);
  }
  *out = ki::Make(abi::kInt, n);
}

static void ChangeCase(Frame* f, Value* out, const Value* v, bool upper) {
  std::string_view text = ki::TextOf(*v);
  std::string& s = ki::RunOf(f).arena.emplace_front(text);
  for (char& c : s) {
    c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c))
                                : std::tolower(static_cast<unsigned char>(c)));
  }
  *out = ki::MakeStr(s);
}

void kt_rt_lower(Frame* f, Value* out, const Value* v) { ChangeCase(f, out, v, false); }
void kt_rt_upper(Frame* f, Value* out, const Value* v) { ChangeCase(f, out, v, true); }

void kt_rt_header(Frame* f, Value* out, const Value* name) {
  ki::NativeRun& run = ki::RunOf(f);
  thread_local std::string key;  // reused: no allocation once warm
  key.assign(ki::TextOf(*name));
  for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto it = run.in->Headers().find(key);
  *out = it == run.in->Headers().end() ? ki::Make(abi::kNull) : ki::MakeStr(it->second);
}

void kt_rt_api_key_id(Frame* f, Value* out) { *out = ki::MakeStr(ki::RunOf(f).in->ApiKeyId()); }

}  // extern "C"

namespace kt::internal {
namespace {

// The signature letters of a C function type, to check each helper against
// its row in builtins.def at compile time.
template <typename T>
struct Letter {
  static constexpr char value = std::is_pointer_v<T> ? 'p' : '?';
};
template <>
struct Letter<void> {
  static constexpr char value = 'v';
};
template <>
struct Letter<uint32_t> {
  static constexpr char value = 'i';
};
template <>
struct Letter<int64_t> {
  static constexpr char value = 'l';
};

template <typename R, typename... A>
constexpr bool SignatureIs(R (*)(A...), std::string_view result, std::string_view args) {
  const char letters[] = {Letter<A>::value..., '\0'};
  return result.size() == 1 && result[0] == Letter<R>::value &&
         std::string_view(letters, sizeof...(A)) == args;
}

#define KT_HELPER(symbol, result, args)            \
  static_assert(SignatureIs(&symbol, result, args), \
                #symbol " is defined with another signature than builtins.def declares");
#include "compiler/internal/builtins.def"
#undef KT_HELPER

}  // namespace

const std::vector<std::pair<std::string, const void*>>& HelperSymbols() {
  static const std::vector<std::pair<std::string, const void*>> symbols = {
#define KT_HELPER(symbol, result, args) {#symbol, reinterpret_cast<const void*>(&symbol)},
#include "compiler/internal/builtins.def"
#undef KT_HELPER
  };
  return symbols;
}

void BuildView(const StageInput& in, abi::RequestView* view, std::vector<abi::MessageView>* messages,
               std::vector<abi::ToolDefView>* tools) {
  *view = abi::RequestView();
  auto str = [](const Json& o, const char* key, abi::Str* out) {
    auto it = o.find(key);
    if (it == o.end() || !it->is_string()) return false;
    const std::string& s = it->get_ref<const std::string&>();
    *out = abi::Str{s.data(), s.size()};
    return true;
  };
  const Json& r = in.Request();
  messages->clear();
  tools->clear();
  auto text = [](const Json& v, abi::Str* out) {
    if (!v.is_string()) return false;
    const std::string& s = v.get_ref<const std::string&>();
    *out = abi::Str{s.data(), s.size()};
    return true;
  };
  // One pass over each object's members (requests have a handful), rather
  // than a tree lookup per field the view has.
  if (r.is_object()) {
    for (auto it = r.begin(); it != r.end(); ++it) {
      const std::string& key = it.key();
      const Json& v = it.value();
      if (key == "model") {
        text(v, &view->model);
      } else if (key == "messages" && v.is_array()) {
        for (const Json& m : v) {
          abi::MessageView mv;
          if (m.is_object()) {
            for (auto f = m.begin(); f != m.end(); ++f) {
              const std::string& k = f.key();
              if (k == "role") {
                text(f.value(), &mv.role);
              } else if (k == "content") {
                text(f.value(), &mv.content);
              } else if (k == "name") {
                mv.has_name = text(f.value(), &mv.name);
              } else if (k == "tool_call_id") {
                mv.has_tool_call_id = text(f.value(), &mv.tool_call_id);
              }
            }
          }
          messages->push_back(mv);
        }
      } else if (key == "tools" && v.is_array()) {
        for (const Json& t : v) {
          abi::ToolDefView tv;
          if (t.is_object()) {
            // Tools as the API sends them ({type, function: {...}}) or flat.
            auto fn_it = t.find("function");
            const Json& fn = fn_it != t.end() && fn_it->is_object() ? *fn_it : t;
            if (auto n = fn.find("name"); n != fn.end()) text(*n, &tv.name);
            if (auto d = fn.find("description"); d != fn.end()) {
              tv.has_description = text(*d, &tv.description);
            }
            if (auto p = fn.find("parameters"); p != fn.end() && !p->is_null()) tv.parameters = &*p;
          }
          tools->push_back(tv);
        }
      } else if (key == "user") {
        view->has_user = text(v, &view->user);
      } else if (key == "stream" && v.is_boolean()) {
        view->stream = v.get<bool>();
      } else if (key == "max_tokens" && v.is_number_integer()) {
        view->has_max_tokens = 1;
        view->max_tokens = v.get<int64_t>();
      } else if (key == "temperature" && v.is_number()) {
        view->has_temperature = 1;
        view->temperature = v.get<double>();
      } else if (key == "metadata" && !v.is_null()) {
        view->metadata = &v;
      }
    }
  }
  view->messages = messages->data();
  view->message_count = messages->size();
  view->tools = tools->data();
  view->tool_count = tools->size();
  if (in.tool.is_object()) {
    str(in.tool, "name", &view->tool_name);
    if (auto it = in.tool.find("args"); it != in.tool.end() && !it->is_null()) view->tool_args = &*it;
    if (auto it = in.tool.find("index"); it != in.tool.end() && it->is_number_integer()) {
      view->tool_index = it->get<int64_t>();
    }
    str(in.tool, "id", &view->tool_id);
  }
  if (in.output.is_object()) {
    str(in.output, "text", &view->output_text);
    view->has_finish_reason = str(in.output, "finish_reason", &view->finish_reason);
    str(in.output, "model", &view->output_model);
  }
  // Keys made once: a 16-byte name would not fit a short string.
  static const std::string kSource = "x-request-source";
  static const std::string kCorrelation = "x-correlation-id";
  const std::map<std::string, std::string>& headers = in.Headers();
  if (auto h = headers.find(kSource); h != headers.end()) {
    view->source = abi::Str{h->second.data(), h->second.size()};
  }
  if (auto h = headers.find(kCorrelation); h != headers.end()) {
    view->correlation_id = abi::Str{h->second.data(), h->second.size()};
  }
}

void PolicyProgram::Limit(std::size_t i, const StageInput& in, bool* applies,
                          std::string* key) const {
  thread_local std::vector<abi::MessageView> messages;
  thread_local std::vector<abi::ToolDefView> tools;
  thread_local NativeRun::Memo memo;
  abi::RequestView view;
  BuildView(in, &view, &messages, &tools);
  memo.count = 0;
  memo.stride = merged_words(static_cast<int>(StageId::kInput));
  NativeRun run;
  run.program = this;
  run.in = &in;
  run.view = &view;
  run.stage = static_cast<int>(StageId::kInput);
  run.memo = &memo;
  abi::Frame frame;
  frame.runtime = &run;
  abi::Value when, k;
  limit_fns_[i](&frame, &view, &when, &k);
  if (run.failed) throw EvaluationError(run.error);
  // As the interpreter: a condition that cannot be judged counts the request.
  *applies = when.tag == abi::kFail || (when.tag == abi::kBool && when.a != 0);
  if (k.tag == abi::kFail) {
    key->clear();
  } else if (k.tag == abi::kStr) {
    key->assign(TextOf(k));
  } else {
    *key = ToJson(k).dump();
  }
}

}  // namespace kt::internal
