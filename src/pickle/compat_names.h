// pthio — Python 2 <-> 3 module and class names for pickles, as Lib/_compat_pickle.py maps them:
// the reader applies them the way Unpickler.find_class does with fix_imports, the writer the way
// Pickler.save_global does below protocol 3. One table serves both directions.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "pthio/pickle.hpp"

namespace pthio::detail {

// A Python 2 global's Python 3 name (NAME_MAPPING, then IMPORT_MAPPING).
global_ref python3_name(std::string module, std::string name);

// A Python 3 global's Python 2 name (REVERSE_NAME_MAPPING, then REVERSE_IMPORT_MAPPING).
std::pair<std::string_view, std::string_view> python2_name(std::string_view module,
                                                           std::string_view name);

}  // namespace pthio::detail
