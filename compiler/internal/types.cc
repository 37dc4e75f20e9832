#include "compiler/internal/types.h"

namespace kt::internal {

const RecordField* RecordType::Find(const std::string& field) const {
  for (const RecordField& f : fields) {
    if (f.name == field) return &f;
  }
  return nullptr;
}

std::vector<std::string> RecordType::FieldNames() const {
  std::vector<std::string> names;
  for (const RecordField& f : fields) names.push_back(f.name);
  return names;
}

Types::Types() {
  // The records mirror what the gateway extracts from an OpenAI
  // chat-completions exchange (docs/language.md, "Stages").
  message_.name = "Message";
  message_.fields = {{"role", string()},
                     {"content", string()},
                     {"name", Optional(string())},
                     {"tool_call_id", Optional(string())}};
  tool_def_.name = "ToolDef";
  tool_def_.fields = {{"name", string()},
                      {"description", Optional(string())},
                      {"parameters", json()}};
  request_.name = "Request";
  request_.fields = {{"model", string()},
                     {"messages", List(RecordOf(message_))},
                     {"tools", List(RecordOf(tool_def_))},
                     {"user", Optional(string())},
                     {"stream", boolean()},
                     {"max_tokens", Optional(integer())},
                     {"temperature", Optional(floating())},
                     {"metadata", json()}};
  tool_call_.name = "ToolCall";
  tool_call_.fields = {{"name", string()},
                       {"args", json()},
                       {"index", integer()},
                       {"id", string()}};
  output_.name = "Output";
  output_.fields = {{"text", string()},
                    {"finish_reason", Optional(string())},
                    {"model", string()}};
}

const Type* Types::List(const Type* elem) {
  auto& slot = lists_[elem];
  if (!slot) slot = std::make_unique<Type>(Type{Type::Kind::kList, elem});
  return slot.get();
}

const Type* Types::Optional(const Type* elem) {
  if (elem->kind == Type::Kind::kOptional || elem->kind == Type::Kind::kError ||
      elem->kind == Type::Kind::kNull || elem->kind == Type::Kind::kJson) {
    return elem;
  }
  auto& slot = optionals_[elem];
  if (!slot) slot = std::make_unique<Type>(Type{Type::Kind::kOptional, elem});
  return slot.get();
}

const Type* Types::RecordOf(const RecordType& r) {
  auto& slot = records_[&r];
  if (!slot) slot = std::make_unique<Type>(Type{Type::Kind::kRecord, nullptr, &r});
  return slot.get();
}

std::string Types::Name(const Type* t) {
  switch (t->kind) {
    case Type::Kind::kError:
      return "<error>";
    case Type::Kind::kAny:
      return "any";
    case Type::Kind::kBool:
      return "bool";
    case Type::Kind::kInt:
      return "int";
    case Type::Kind::kFloat:
      return "float";
    case Type::Kind::kString:
      return "string";
    case Type::Kind::kPattern:
      return "pattern";
    case Type::Kind::kDuration:
      return "duration";
    case Type::Kind::kNull:
      return "null";
    case Type::Kind::kJson:
      return "json";
    case Type::Kind::kList:
      return "list<" + Name(t->elem) + ">";
    case Type::Kind::kOptional:
      return Name(t->elem) + "?";
    case Type::Kind::kRecord:
      return t->record->name;
  }
  return "?";
}

}  // namespace kt::internal
