// The fixtures' manifests (what PyTorch or the safetensors package saw when writing them), parsed
// once per file.
#pragma once

#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "support.h"

namespace pthio_test {

// fixtures/<rel>: "manifest.json" (fixtures/generate.py), "st/manifest.json", ...
inline const nlohmann::json& manifest(const std::string& rel = "manifest.json") {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(rel);
  if (it == cache.end()) {
    std::ifstream in(fixtures_dir() / rel);
    it = cache.emplace(rel, nlohmann::json::parse(in)).first;
  }
  return it->second;
}

}  // namespace pthio_test
