// Walking values without recursion (not part of the public API).
#pragma once

#include <cstddef>

#include "pthio/value.hpp"

namespace pthio::detail {

// The i-th value directly inside a container, in rendering order (list and tuple items; a dict's
// keys and values alternately, then its attributes' values; an object's args, state, list items,
// then dict items' keys and values alternately); nullptr past the last, and for any other value.
const value* child_at(const value& v, std::size_t i);

}  // namespace pthio::detail
