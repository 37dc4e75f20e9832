// The policy program ABI: what JIT-compiled policy code reads and passes.
//
// A `RequestView` is a flat, read-only view of one exchange, filled once per
// evaluation by the engine: texts are (pointer, length) spans into the
// parsed request, never copies, and the fields policies read most (message
// roles and contents, the tool name, the output text) are plain loads.
// JSON-typed fields (`tool.args`, `input.metadata`, a tool's `parameters`)
// are opaque handles that only runtime helpers look into.
//
// A `Value` is what an expression evaluates to in generated code: a tag and
// two words. Generated code keeps values in stack slots and hands them to
// the helpers by address; no helper allocates on the heap for the common
// cases (a lower-cased string lives in the evaluation's arena).
//
// Plain data, no behaviour: the compiler (codegen) and the runtime (the
// helpers) both include it. Changing a layout here changes `kAbiVersion`,
// which is part of every object-cache key.
#ifndef KT_RUNTIME_ABI_REQUEST_VIEW_H_
#define KT_RUNTIME_ABI_REQUEST_VIEW_H_

#include <cstdint>

namespace kt::abi {

inline constexpr uint32_t kAbiVersion = 1;

struct Str {
  const char* data = "";
  uint64_t size = 0;
};

struct MessageView {
  Str role;
  Str content;
  Str name;
  Str tool_call_id;
  uint8_t has_name = 0;
  uint8_t has_tool_call_id = 0;
};

struct ToolDefView {
  Str name;
  Str description;
  uint8_t has_description = 0;
  const void* parameters = nullptr;  // JSON handle (null: JSON null)
};

struct RequestView {
  // input
  Str model;
  const MessageView* messages = nullptr;
  uint64_t message_count = 0;
  const ToolDefView* tools = nullptr;
  uint64_t tool_count = 0;
  Str user;
  uint8_t has_user = 0;
  uint8_t stream = 0;
  uint8_t has_max_tokens = 0;
  uint8_t has_temperature = 0;
  int64_t max_tokens = 0;
  double temperature = 0;
  const void* metadata = nullptr;  // JSON handle
  // tool_call
  Str tool_name;
  const void* tool_args = nullptr;  // JSON handle
  int64_t tool_index = 0;
  Str tool_id;
  // output
  Str output_text;
  Str finish_reason;
  uint8_t has_finish_reason = 0;
  Str output_model;
  // request context
  Str source;          // X-Request-Source
  Str correlation_id;  // X-Correlation-Id
};

// Value tags. Scalars are normalised: a JSON string reads as kStr (pointing
// into the JSON document), a JSON number as kInt or kFloat, JSON null as
// kNull; kJson is left for arrays and objects.
enum Tag : uint32_t {
  kFail = 0,  // a failed `as` conversion: the condition it is in is false
  kNull = 1,
  kBool = 2,       // a: 0 or 1
  kInt = 3,        // a: the value
  kFloat = 4,      // a: the bits of a double
  kStr = 5,        // a: data, b: size
  kJson = 6,       // a: JSON handle (array or object)
  kRequest = 7,    // a: RequestView*   (`input`)
  kTool = 8,       // a: RequestView*   (`tool`)
  kOutput = 9,     // a: RequestView*   (`output`)
  kMessage = 10,   // a: MessageView*
  kToolDef = 11,   // a: ToolDefView*
  kMessages = 12,  // a: MessageView*, b: count
  kToolDefs = 13,  // a: ToolDefView*, b: count
  kValues = 14,    // a: Value*, b: count (a list literal, on the stack)
};

struct Value {
  uint32_t tag = kNull;
  uint32_t pad = 0;
  uint64_t a = 0;
  uint64_t b = 0;
};

// Field names generated code asks the helpers for, by number; the helper
// picks the record's member by the value's tag. Other names are JSON
// members, looked up by their text.
enum Field : uint32_t {
  kFieldOther = 0,
  kFieldModel, kFieldMessages, kFieldTools, kFieldUser, kFieldStream, kFieldMaxTokens,
  kFieldTemperature, kFieldMetadata, kFieldRole, kFieldContent, kFieldName, kFieldToolCallId,
  kFieldDescription, kFieldParameters, kFieldArgs, kFieldIndex, kFieldId, kFieldText,
  kFieldFinishReason,
};

// What a missing field or an out-of-range index reads as: the zero of the
// expression's type (null for optional types).
enum Zero : uint32_t { kZeroNull, kZeroStr, kZeroInt, kZeroFloat, kZeroBool, kZeroList };

// The per-evaluation frame generated code receives. Only `enabled` is read
// by generated code directly; the rest is the runtime's.
struct Frame {
  const uint8_t* enabled = nullptr;  // per rule of the stage: evaluate it?
  void* runtime = nullptr;
};

// A stage entry point: evaluates the stage's rules in declaration order,
// calling the runtime's `kt_rt_fire` for each rule whose condition holds;
// returns 1 when the runtime said to stop (an enforced block).
using StageFn = uint32_t (*)(Frame* frame, const RequestView* view);

}  // namespace kt::abi

#endif  // KT_RUNTIME_ABI_REQUEST_VIEW_H_
