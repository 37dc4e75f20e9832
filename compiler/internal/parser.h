// Parser facade: the only code that sees ANTLR. It lexes and parses one file,
// turns syntax errors into diagnostics, and builds the AST.
#ifndef KT_COMPILER_INTERNAL_PARSER_H_
#define KT_COMPILER_INTERNAL_PARSER_H_

#include <memory>
#include <string>
#include <string_view>

#include "compiler/compiler.h"
#include "compiler/internal/ast.h"
#include "compiler/internal/diagnostics.h"

namespace kt::internal {

// Returns the AST, or nullptr when the file has syntax errors (which are then
// in `sink`). Comments are kept in `FileAst::comments` for the formatter.
std::unique_ptr<FileAst> ParseFile(const std::string& path, std::string_view text,
                                   const Options& options, DiagnosticSink* sink);

// Decodes the escapes of a string literal body (without quotes). Returns false
// and sets `error_offset` (relative to the body) on an invalid escape.
bool DecodeStringBody(std::string_view body, std::string* out, std::size_t* error_offset);

}  // namespace kt::internal

#endif  // KT_COMPILER_INTERNAL_PARSER_H_
