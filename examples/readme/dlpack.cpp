// README, "Load into an inference engine" through DLPack: hand a checkpoint's tensor to another
// framework without copying, and take one back.
//   readme_dlpack STATE_DICT        (CTest runs it on fixtures/t2/linear.pth, nn.Linear(4, 3))
// The README shows share() verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <iostream>

#include <pthio/pthio.hpp>

// What a consumer does with a DLPack tensor: read it, then release it exactly once.
float consume(pthio::dlpack::DLManagedTensorVersioned* dl) {
  const pthio::dlpack::DLTensor& t = dl->dl_tensor;
  const float* data = static_cast<const float*>(t.data);
  float v = data[1 * t.strides[0] + 2 * t.strides[1]];  // element [1, 2]; strides count elements
  dl->deleter(dl);
  return v;
}

float share(const char* path) {
  pthio::dlpack::DLManagedTensorVersioned* dl = nullptr;
  {
    pthio::state_dict sd = pthio::extract_state_dict(pthio::load(path));
    dl = pthio::to_dlpack_versioned(sd.at("weight"));  // no copy; throws for dtypes DLPack lacks
  }  // every pthio handle is gone: the DLPack struct alone keeps the storage alive
  // A pointer from here can be reinterpret_cast to <dlpack/dlpack.h>'s DLManagedTensorVersioned;
  // Python frameworks exchange it inside a PyCapsule named "dltensor_versioned".
  return consume(dl);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: readme_dlpack STATE_DICT\n");
    return 2;
  }
  try {
    float v = share(argv[1]);
    pthio::state_dict sd = pthio::extract_state_dict(pthio::load(argv[1]));
    const pthio::tensor& w = sd.at("weight");
    std::cout << "weight[1, 2] through DLPack = " << v << '\n';
    if (v != w.at<float>({1, 2})) return 1;

    // Import: from_dlpack takes ownership and calls the deleter when the last handle goes.
    pthio::tensor back = pthio::from_dlpack(pthio::to_dlpack_versioned(w));
    if (back.raw_data() != w.raw_data() || back.shape() != w.shape() ||
        back.strides() != w.strides()) {
      std::cout << "readme_dlpack: the round trip copied or changed the tensor\n";
      return 1;
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_dlpack: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_dlpack: ok\n";
}
