// The fixtures' manifests (what PyTorch or the safetensors package saw when writing them), parsed
// once per file, and where a JSON rendering first differs from one.
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

// The first path at which two JSON documents differ (a JSON patch operation, cut at 600
// characters), for readable failures; "" when they are equal.
inline std::string first_difference(const nlohmann::json& got, const nlohmann::json& want) {
  auto patch = nlohmann::json::diff(want, got);
  if (patch.empty()) return "";
  std::string s = patch[0].dump();
  return s.size() > 600 ? s.substr(0, 600) + "..." : s;
}

}  // namespace pthio_test
