// Small file helpers shared by the compiler tests.
#ifndef KT_TESTS_COMPILER_TEST_FILES_H_
#define KT_TESTS_COMPILER_TEST_FILES_H_

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace kt::testing {

inline std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace kt::testing

#endif  // KT_TESTS_COMPILER_TEST_FILES_H_
