// torch.distributed.checkpoint folders written as FileSystemWriter writes a single rank's
// (dcp.hpp).
#include "pthio/dcp.hpp"
