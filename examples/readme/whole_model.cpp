// README, "Get the weights out of a model saved whole": module.state_dict() of a pickled model,
// read without its code, and exported as a state dict torch loads weights-only.
//   readme_whole_model CHECKPOINT OUT_DIR     (CTest runs it on fixtures/t2/whole_ckpt.pt)
// The README shows export_weights() verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string_view>

#include <pthio/pthio.hpp>

// `entry`: "" finds the model (the root, or its "model", "ema", ... entry); "ema" picks that one.
void export_weights(const char* in, std::string_view entry, const std::filesystem::path& out) {
  pthio::value root = pthio::load(in);  // not strict: the file names the model's own classes
  pthio::state_dict sd = pthio::extract_state_dict(root, entry);  // what model.state_dict() gives
  pthio::save(out, sd.to_value());  // torch.load(out, weights_only=True) takes it; half stays half
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: readme_whole_model CHECKPOINT OUT_DIR\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(argv[2]);
    for (std::string_view entry : {"", "ema"}) {
      std::filesystem::path out =
          std::filesystem::path(argv[2]) / (entry.empty() ? "model.pth" : "ema.pth");
      export_weights(argv[1], entry, out);
      // The file holds the state dict alone, with torch's names, the same tensors as the model.
      pthio::value root = pthio::load(argv[1]);
      pthio::state_dict want = pthio::extract_state_dict(root, entry);
      pthio::state_dict got = pthio::state_dict::from_value(pthio::load(out));
      const pthio::tensor& first = got.entries().at(1).second;
      std::cout << out.filename().string() << ": " << got.size() << " tensors, "
                << got.entries().at(1).first << " " << pthio::dtype_name(first.dtype()) << "\n";
      if (got.keys() != want.keys()) return 1;
      for (const auto& [name, t] : want)
        if (!(pthio::value(got.at(name)) == pthio::value(t))) {
          std::cout << "readme_whole_model: " << name << " differs\n";
          return 1;
        }
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_whole_model: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_whole_model: ok\n";
}
