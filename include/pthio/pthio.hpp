// pthio — read and write PyTorch checkpoints without LibTorch. Includes every public header.
#pragma once

#include "pthio/checkpoint.hpp"
#include "pthio/cuda.hpp"
#include "pthio/device.hpp"
#include "pthio/dtype.hpp"
#include "pthio/error.hpp"
#include "pthio/io.hpp"
#include "pthio/json.hpp"
#include "pthio/pickle.hpp"
#include "pthio/safetensors.hpp"
#include "pthio/sharded.hpp"
#include "pthio/state_dict.hpp"
#include "pthio/storage.hpp"
#include "pthio/tensor.hpp"
#include "pthio/value.hpp"
#include "pthio/zip.hpp"
