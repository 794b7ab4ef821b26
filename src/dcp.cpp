// torch.distributed.checkpoint folders: the metadata, checked, and the tensors assembled from
// their chunks (dcp.hpp).
#include "pthio/dcp.hpp"
