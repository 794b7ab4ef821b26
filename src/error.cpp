#include "pthio/error.hpp"

namespace pthio {

std::string_view errc_name(errc kind) noexcept {
  switch (kind) {
    case errc::io: return "io";
    case errc::corrupt_zip: return "corrupt zip";
    case errc::corrupt_pickle: return "corrupt pickle";
    case errc::corrupt_checkpoint: return "corrupt checkpoint";
    case errc::corrupt_safetensors: return "corrupt safetensors";
    case errc::unsupported: return "unsupported";
    case errc::unsafe_global: return "unsafe global";
    case errc::limit_exceeded: return "limit exceeded";
    case errc::mismatch: return "mismatch";
    case errc::invalid_argument: return "invalid argument";
    case errc::cuda: return "cuda";
  }
  return "error";
}

namespace {
std::string compose(const std::string& context, std::optional<std::uint64_t> offset,
                    const std::string& message) {
  std::string s;
  if (!context.empty()) s += context + ": ";
  if (offset) s += "offset " + std::to_string(*offset) + ": ";
  return s + message;
}
}  // namespace

error::error(errc kind, std::string message, std::string context,
             std::optional<std::uint64_t> offset)
    : std::runtime_error(compose(context, offset, message)),
      kind_(kind),
      message_(std::move(message)),
      context_(std::move(context)),
      offset_(offset) {}

error error::with_outer_context(std::string_view outer) const {
  if (outer.empty()) return *this;
  std::string ctx(outer);
  if (!context_.empty() && context_ != outer) ctx += ": " + context_;
  return error(kind_, message_, ctx, offset_);
}

}  // namespace pthio
