// The checker's types. Types are interned: two equal types are the same
// pointer, so comparisons are pointer comparisons.
#ifndef KT_COMPILER_INTERNAL_TYPES_H_
#define KT_COMPILER_INTERNAL_TYPES_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kt::internal {

struct RecordType;

struct Type {
  enum class Kind {
    kError,  // poison: an error was already reported
    kAny,    // element type of `[]`; compatible with everything
    kBool,
    kInt,
    kFloat,
    kString,
    kPattern,
    kDuration,
    kNull,
    kJson,
    kList,
    kOptional,
    kRecord,
  };
  Kind kind;
  const Type* elem = nullptr;          // kList, kOptional
  const RecordType* record = nullptr;  // kRecord
};

struct RecordField {
  std::string name;
  const Type* type;
};

struct RecordType {
  std::string name;
  std::vector<RecordField> fields;
  const RecordField* Find(const std::string& field) const;
  std::vector<std::string> FieldNames() const;
};

class Types {
 public:
  Types();
  const Type* error() const { return &error_; }
  const Type* any() const { return &any_; }
  const Type* boolean() const { return &bool_; }
  const Type* integer() const { return &int_; }
  const Type* floating() const { return &float_; }
  const Type* string() const { return &string_; }
  const Type* pattern() const { return &pattern_; }
  const Type* duration() const { return &duration_; }
  const Type* null() const { return &null_; }
  const Type* json() const { return &json_; }
  const Type* List(const Type* elem);
  const Type* Optional(const Type* elem);

  const RecordType& request() const { return request_; }
  const RecordType& message() const { return message_; }
  const RecordType& tool_def() const { return tool_def_; }
  const RecordType& tool_call() const { return tool_call_; }
  const RecordType& output() const { return output_; }
  const Type* RecordOf(const RecordType& r);

  static std::string Name(const Type* t);

 private:
  Type error_{Type::Kind::kError}, any_{Type::Kind::kAny}, bool_{Type::Kind::kBool},
      int_{Type::Kind::kInt}, float_{Type::Kind::kFloat}, string_{Type::Kind::kString},
      pattern_{Type::Kind::kPattern}, duration_{Type::Kind::kDuration},
      null_{Type::Kind::kNull}, json_{Type::Kind::kJson};
  std::map<const Type*, std::unique_ptr<Type>> lists_, optionals_;
  std::map<const RecordType*, std::unique_ptr<Type>> records_;
  RecordType request_, message_, tool_def_, tool_call_, output_;
};

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_TYPES_H_
