// pthio — where a tensor's bytes live.
//
// A device is a type plus an optional index, spelled as torch spells location tags:
// "cpu", "cuda", "cuda:0", "mps", "meta", "xla:1". Types pthio cannot hold data on (mps, meta,
// xla, ...) still parse, so files saved there can be listed and mapped elsewhere.
#pragma once

#include <string>
#include <string_view>

#include "pthio/export.hpp"

namespace pthio {

enum class device_type { cpu, cuda, meta, other };

class PTHIO_API device {
 public:
  device() = default;
  device(device_type type, int index = -1) : type_(type), index_(index) {}

  // Parses a torch location tag; throws pthio::error(invalid_argument) on malformed text.
  static device parse(std::string_view tag);

  device_type type() const noexcept { return type_; }
  int index() const noexcept { return index_; }  // -1 when none was given
  bool is_cpu() const noexcept { return type_ == device_type::cpu; }
  bool is_cuda() const noexcept { return type_ == device_type::cuda; }
  // torch's location tag: "cpu", "cuda:0", "meta", or the other type's name.
  std::string str() const;

  friend bool operator==(const device& a, const device& b) noexcept {
    return a.type_ == b.type_ && a.index_ == b.index_ && a.other_ == b.other_;
  }

 private:
  device_type type_ = device_type::cpu;
  int index_ = -1;
  std::string other_;  // the type name when type_ == other
};

inline const device cpu_device{};

}  // namespace pthio
