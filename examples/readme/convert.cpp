// README, "Convert": a training checkpoint's model weights as a safetensors file, and back.
//   readme_convert CHECKPOINT OUT_DIR     (CTest runs it on fixtures/t2/ckpt_adam.pth)
// The README shows to_safetensors() verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <pthio/pthio.hpp>

void to_safetensors(const char* in, const std::filesystem::path& out) {
  // Only the model: safetensors stores tensors, not the optimizer's numbers or the epoch.
  pthio::state_dict sd = pthio::extract_state_dict(pthio::load(in));
  pthio::save_safetensors(out, sd.to_value());  // byte for byte as the safetensors package writes
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: readme_convert CHECKPOINT OUT_DIR\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(argv[2]);
    std::filesystem::path out = std::filesystem::path(argv[2]) / "model.safetensors";
    to_safetensors(argv[1], out);

    // load_checkpoint() recognises safetensors by its bytes; the root is name -> tensor.
    pthio::checkpoint back = pthio::load_checkpoint(out);
    pthio::state_dict original = pthio::extract_state_dict(pthio::load(argv[1]));
    pthio::state_dict converted = pthio::state_dict::from_value(back.root);
    std::cout << pthio::format_name(back.format) << ": " << converted.size() << " tensors\n";
    if (converted.size() != original.size()) return 1;
    for (const auto& [name, t] : original)
      if (!converted.contains(name) || !(pthio::value(converted.at(name)) == pthio::value(t))) {
        std::cout << "readme_convert: " << name << " differs after the round trip\n";
        return 1;
      }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_convert: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_convert: ok\n";
}
