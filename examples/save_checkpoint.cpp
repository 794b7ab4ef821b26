// Builds a small state dict and a training checkpoint in C++ and saves it as torch.save would.
// Load it in Python with torch.load(path, weights_only=True).
//   save_checkpoint OUT.pth
#include <cstdio>

#include "pthio/pthio.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: save_checkpoint OUT.pth\n");
    return 2;
  }
  using pthio::tensor;
  using pthio::value;

  tensor weight = tensor::from_values<float>({0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}, {2, 3});
  weight.set_requires_grad(true);
  value model = value::make_ordered_dict();  // a state_dict is an OrderedDict
  model.as_dict().set("fc.weight", value(weight, /*parameter=*/true));
  model.as_dict().set("fc.bias", value(tensor::from_values<float>({0.0f, 1.0f}, {2})));

  value ckpt = value::make_dict();
  ckpt.as_dict().set("epoch", value(3));
  ckpt.as_dict().set("model_state_dict", model);
  ckpt.as_dict().set("loss", value(0.125));
  try {
    pthio::save(argv[1], ckpt);  // atomic: a temporary file renamed over OUT when complete
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  std::printf("wrote %s\n", argv[1]);
}
