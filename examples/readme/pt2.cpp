// README, "Read the weights of a torch.export model": a .pt2 written by torch.export.save (a
// dynamic batch dimension), its weights listed and its inputs and outputs described.
//   readme_pt2 FILE.pt2     (CTest runs it on fixtures/t2/export_dynamic.pt2)
// The README shows describe_export() verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <pthio/pthio.hpp>

// A dimension of a signature's shape: a size, or the symbol of a dynamic one ("s77").
std::string dim_text(const pthio::value& d) {
  return d.is_int() ? std::to_string(d.as_int()) : d.as_str();
}

// What an inference engine needs from a torch.export archive: the weights by name, and the
// dtypes and shapes the program takes and gives (no graph is run, nothing from the file executes).
void describe_export(const std::filesystem::path& pt2) {
  pthio::checkpoint ck = pthio::load_checkpoint(pt2);  // the state dict, then the constants
  for (const auto& [name, v] : ck.root.as_dict().entries())
    std::cout << name.as_str() << " " << pthio::dtype_name(v.as_tensor().dtype()) << " "
              << pthio::shape_string(v.as_tensor().shape()) << "\n";
  const pthio::dict_object& signature = ck.root.as_dict().attr("signature")->as_dict();
  for (const char* side : {"inputs", "outputs"})
    for (const pthio::value& io : signature.get(side)->items()) {
      const pthio::dict_object& d = io.as_dict();
      std::cout << side << ": " << d.get("name")->as_str() << " " << d.get("dtype")->as_str();
      for (const pthio::value& dim : d.get("shape")->items()) std::cout << " " << dim_text(dim);
      std::cout << "\n";
    }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: readme_pt2 FILE.pt2\n");
    return 2;
  }
  try {
    describe_export(argv[1]);
    // Lazy: the same names with no tensor read, then one tensor's bytes equal to the eager load's.
    pthio::load_options lazy;
    lazy.mode = pthio::load_mode::lazy;
    pthio::checkpoint a = pthio::load_checkpoint(argv[1], lazy);
    pthio::checkpoint b = pthio::load_checkpoint(argv[1]);
    if (a.format != pthio::checkpoint_format::pt2 || !a.is_lazy()) return 1;
    const pthio::value parameter(a.load_tensor("fc1.weight"), /*parameter=*/true);
    if (!(parameter == *b.root.as_dict().get("fc1.weight"))) {
      std::cout << "readme_pt2: fc1.weight differs between lazy and eager\n";
      return 1;
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_pt2: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_pt2: ok\n";
}
