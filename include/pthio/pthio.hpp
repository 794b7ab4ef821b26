// pthio — read and write PyTorch checkpoints without LibTorch. Includes every public C++ header
// but <pthio/eigen.hpp>, the one that needs Eigen: include it yourself (and link pthio::eigen, or
// put Eigen 3 on the include path) to view tensors as Eigen matrices. dlpack.hpp declares its
// structs in pthio::dlpack and never clashes with a <dlpack/dlpack.h> in the same program. The C
// API, pthio.h, is separate: C programs include it on its own.
#pragma once

#include "pthio/checkpoint.hpp"
#include "pthio/convert.hpp"
#include "pthio/cuda.hpp"
#include "pthio/dcp.hpp"
#include "pthio/device.hpp"
#include "pthio/dlpack.hpp"
#include "pthio/dtype.hpp"
#include "pthio/error.hpp"
#include "pthio/io.hpp"
#include "pthio/pickle.hpp"
#include "pthio/pt2.hpp"
#include "pthio/safetensors.hpp"
#include "pthio/scan.hpp"
#include "pthio/sharded.hpp"
#include "pthio/slice.hpp"
#include "pthio/state_dict.hpp"
#include "pthio/storage.hpp"
#include "pthio/tensor.hpp"
#include "pthio/value.hpp"
#include "pthio/zip.hpp"
