// README, "Resume training": a model and its Adam state from a checkpoint PyTorch wrote, saved
// back in the same layout; then the strict and non-strict ways of loading a state dict.
//   readme_resume CHECKPOINT OUT_DIR    (CTest runs it on fixtures/t2/ckpt_adam.pth:
//   nn.Sequential(Linear(10, 32), ReLU, Linear(32, 16), ReLU, Linear(16, 3)) after 3 epochs)
// The README shows every function but main() verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <pthio/pthio.hpp>

// The model as a training engine holds it: name -> its own tensors, in torch's key order.
pthio::state_dict make_model(const std::string& prefix, std::int64_t classes) {
  pthio::state_dict m;
  const std::int64_t sizes[] = {10, 32, 16, classes};
  for (int i = 0; i < 3; ++i) {
    std::string name = prefix + std::to_string(2 * i);
    m.set(name + ".weight", pthio::tensor::zeros(pthio::dtype::float32, {sizes[i + 1], sizes[i]}));
    m.set(name + ".bias", pthio::tensor::zeros(pthio::dtype::float32, {sizes[i + 1]}));
  }
  return m;
}

// Copies the checkpoint into the model's tensors in place and returns the epoch to run next.
std::int64_t resume(const std::filesystem::path& path, pthio::state_dict& model,
                    pthio::optimizer_state& optimizer) {
  pthio::value root = pthio::load(path);
  // Strict, as torch's default: a missing, unexpected or mis-shaped key throws
  // pthio::error(mismatch) worded as torch words it, and nothing is copied.
  pthio::load_state_dict(model, pthio::extract_state_dict(root));
  optimizer = pthio::optimizer_state::from_value(*root.find("optimizer_state_dict"));
  return root.find("epoch")->as_int() + 1;
}

void save_resumable(const std::filesystem::path& path, std::int64_t epoch,
                    const pthio::state_dict& model, const pthio::optimizer_state& optimizer) {
  pthio::value ckpt = pthio::value::make_dict();
  ckpt.as_dict().set("epoch", pthio::value(epoch));
  ckpt.as_dict().set("model_state_dict", model.to_value());
  ckpt.as_dict().set("optimizer_state_dict",
                     optimizer.to_value());  // as torch.optim.Adam writes it
  pthio::save(path, ckpt);
}

// No checkpoint yet: Adam's state as torch.optim.Adam(model.parameters(), lr=1e-3) starts it.
pthio::optimizer_state fresh_adam(const pthio::state_dict& model) {
  pthio::adam_options adam;
  adam.lr = 1e-3;
  pthio::optimizer_state optimizer;
  optimizer.param_groups.push_back(
      pthio::adam_param_group(adam, static_cast<std::int64_t>(model.size())));
  return optimizer;  // state fills in as training steps; to_value() writes torch's layout
}

// A model whose last layer has 5 outputs, loaded strictly from a 3-class checkpoint.
void show_strict_error(const pthio::state_dict& source) {
  pthio::state_dict five_classes = make_model("", 5);
  try {
    pthio::load_state_dict(five_classes, source);
  } catch (const pthio::error& e) {  // e.kind() == pthio::errc::mismatch
    std::cout << e.what() << '\n';
  }
}

// Transfer learning: the checkpoint's layers under "backbone.", and a new head of another size.
pthio::load_report fine_tune(const pthio::state_dict& source) {
  pthio::state_dict model = make_model("backbone.", 3);
  model.erase("backbone.4.weight");
  model.erase("backbone.4.bias");
  model.set("head.weight", pthio::tensor::zeros(pthio::dtype::float32, {5, 16}));
  model.set("head.bias", pthio::tensor::zeros(pthio::dtype::float32, {5}));

  pthio::load_state_dict_options o;
  o.strict = false;                  // missing and unexpected keys are reported, not fatal
  o.remap.add_prefix = "backbone.";  // "0.weight" -> "backbone.0.weight"
  pthio::load_report r = pthio::load_state_dict(model, source, o);
  std::cout << r.loaded.size() << " loaded; missing:";
  for (const std::string& k : r.missing) std::cout << ' ' << k;
  std::cout << "; unexpected:";
  for (const std::string& k : r.unexpected) std::cout << ' ' << k;
  std::cout << '\n';
  return r;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: readme_resume CHECKPOINT OUT_DIR\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(argv[2]);
    std::filesystem::path out = std::filesystem::path(argv[2]) / "resumed.pth";

    pthio::state_dict model = make_model("", 3);
    pthio::optimizer_state optimizer;
    std::int64_t epoch = resume(argv[1], model, optimizer);
    const pthio::tensor& exp_avg =
        optimizer.tensor_at(0, "exp_avg");  // Adam's first moment of parameter 0
    std::cout << "resuming at epoch " << epoch << ", lr "
              << optimizer.group_field(0, "lr")->as_float() << ", exp_avg of parameter 0 "
              << pthio::shape_string(exp_avg.shape()) << '\n';
    save_resumable(out, epoch, model, optimizer);

    // What was saved loads back the same way.
    pthio::state_dict again = make_model("", 3);
    pthio::optimizer_state optimizer_again;
    if (resume(out, again, optimizer_again) != epoch + 1) return 1;
    for (const auto& [name, t] : model)
      if (!(pthio::value(again.at(name)) == pthio::value(t))) return 1;
    if (!(optimizer_again.to_value() == optimizer.to_value())) return 1;
    pthio::optimizer_state fresh = fresh_adam(model);
    if (fresh.group_field(0, "lr")->as_float() != 1e-3 || !fresh.state.empty() ||
        fresh.group_field(0, "params")->items().size() != 6)
      return 1;

    pthio::state_dict source = pthio::extract_state_dict(pthio::load(argv[1]));
    show_strict_error(source);
    pthio::load_report r = fine_tune(source);
    if (r.loaded.size() != 4 || r.missing.size() != 2 || r.unexpected.size() != 2) return 1;
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_resume: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_resume: ok\n";
}
