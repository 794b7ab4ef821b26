// torch's text for a tensor: what `print(t)` shows in torch 2.x (torch/_tensor_str.py), for
// `pthio cat`.
#pragma once

#include <cstdint>
#include <string>

#include "pthio/tensor.hpp"

namespace pthio::cli {

// repr(t) as torch 2.x gives it with its default print options (precision 4, linewidth 80,
// edgeitems 3, sci_mode chosen per tensor) and `threshold`: a tensor of more than `threshold`
// elements is summarized (`...` between the first and last edgeitems along each dimension).
// `t` is a CPU tensor that does not require grad; no trailing newline.
std::string torch_text(const tensor& t, std::int64_t threshold = 1000);

}  // namespace pthio::cli
