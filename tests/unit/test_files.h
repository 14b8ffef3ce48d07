#pragma once
// Helpers for unit tests that need files: a private temp dir and the generated test PKI.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace orthrus::testing {

inline std::string PkiDir() { return ORTHRUS_TEST_PKI_DIR; }
inline std::string Pki(const std::string& name) { return PkiDir() + "/" + name; }

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/orthrus-unit-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text, int mode = 0644) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    std::filesystem::permissions(p, static_cast<std::filesystem::perms>(mode));
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace orthrus::testing
