#include "pthio/device.hpp"

#include <charconv>

#include "pthio/error.hpp"

namespace pthio {

device device::parse(std::string_view tag) {
  auto bad = [&](const char* why) {
    return error(errc::invalid_argument, "bad device '" + std::string(tag) + "': " + why);
  };
  std::string_view type = tag;
  int index = -1;
  if (auto colon = tag.find(':'); colon != std::string_view::npos) {
    type = tag.substr(0, colon);
    std::string_view num = tag.substr(colon + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), index);
    if (num.empty() || ec != std::errc() || p != num.data() + num.size() || index < 0)
      throw bad("the index must be a non-negative integer");
  }
  if (type.empty()) throw bad("empty device type");
  for (char c : type)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      throw bad("device types are lowercase letters, digits and '_'");
  device d;
  d.index_ = index;
  if (type == "cpu") {
    d.type_ = device_type::cpu;
    d.index_ = -1;  // torch treats cpu:0 as cpu
  } else if (type == "cuda") {
    d.type_ = device_type::cuda;
  } else if (type == "meta") {
    d.type_ = device_type::meta;
  } else {
    d.type_ = device_type::other;
    d.other_ = std::string(type);
  }
  return d;
}

std::string device::str() const {
  std::string s;
  switch (type_) {
    case device_type::cpu: return "cpu";
    case device_type::cuda: s = "cuda"; break;
    case device_type::meta: s = "meta"; break;
    case device_type::other: s = other_; break;
  }
  if (index_ >= 0) s += ":" + std::to_string(index_);
  return s;
}

}  // namespace pthio
