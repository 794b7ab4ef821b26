// README, "Export an FSDP checkpoint without torch": a torch.distributed.checkpoint folder written
// by two ranks (FSDP2), its model's weights assembled tensor by tensor into one safetensors file.
//   readme_dcp DCP_FOLDER OUT_DIR     (CTest runs it on fixtures/dcp/fsdp2)
// The README shows export_fsdp() verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <pthio/pthio.hpp>

// The model's weights from an FSDP checkpoint folder, each tensor assembled from the ranks'
// shards as it is written, into one safetensors file an inference engine loads.
void export_fsdp(const std::filesystem::path& dcp_dir, const std::filesystem::path& out) {
  pthio::load_options lazy;
  lazy.mode = pthio::load_mode::lazy;  // the metadata only: no tensor is read yet
  pthio::checkpoint ck = pthio::load_checkpoint(dcp_dir, lazy);
  ck.root = pthio::extract_state_dict(ck.root, "model").to_value();  // not the optimizer's state
  pthio::convert_options o;
  o.to = pthio::checkpoint_format::safetensors;
  pthio::convert(ck, out, o);  // one tensor in memory at a time
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: readme_dcp DCP_FOLDER OUT_DIR\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(argv[2]);
    const auto out = std::filesystem::path(argv[2]) / "model.safetensors";
    export_fsdp(argv[1], out);
    // The file holds the model's tensors whole: each equals the folder's, read eagerly.
    pthio::checkpoint whole = pthio::load_checkpoint(argv[1]);
    pthio::state_dict want = pthio::extract_state_dict(whole.root, "model");
    pthio::state_dict got = pthio::state_dict::from_value(pthio::load(out));
    std::cout << out.filename().string() << ": " << got.size() << " tensors\n";
    if (got.size() != want.size()) return 1;
    for (const auto& [name, t] : want) {
      std::cout << name << " " << pthio::shape_string(got.at(name).shape()) << "\n";
      if (!(pthio::value(got.at(name)) == pthio::value(t))) {
        std::cout << "readme_dcp: " << name << " differs\n";
        return 1;
      }
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_dcp: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_dcp: ok\n";
}
