// Lazy checkpoints: placeholders for storages not yet read, and the records that say where their
// bytes are; checkpoint::load_tensor reads one, checkpoint::materialize all of them.
#include <unordered_map>

#include "internal.h"

namespace pthio {

namespace detail {

storage lazy_records::placeholder(record r) {
  storage s =
      storage::borrow(nullptr, static_cast<std::size_t>(r.nbytes), device(device_type::meta));
  by_storage.emplace(s.id(), std::move(r));
  placeholders.push_back(s);
  return s;
}

const lazy_records::record* lazy_records::find(const storage& s) const {
  auto it = by_storage.find(s.id());
  return it == by_storage.end() ? nullptr : &it->second;
}

void lazy_records::absorb(const lazy_records& other) {
  const auto first = static_cast<std::uint32_t>(files.size());
  files.insert(files.end(), other.files.begin(), other.files.end());
  for (const auto& [id, r] : other.by_storage) {
    record moved = r;
    moved.file += first;
    by_storage.emplace(id, std::move(moved));
  }
  // The placeholders come along, so their ids stay unique while these records name them.
  placeholders.insert(placeholders.end(), other.placeholders.begin(), other.placeholders.end());
}

namespace {
thread_local const std::function<void(std::uint64_t)>* read_observer = nullptr;

// The CRC-32 a record's bytes are checked against, if any (zip records, when the load checks).
std::optional<std::uint32_t> expected_crc(const lazy_records::file& f,
                                          const lazy_records::record& r) {
  if (r.entry && f.verify_crc && r.entry->crc32 != 0) return r.entry->crc32;
  return std::nullopt;
}

// A record whose bytes did not match its CRC-32: the zip reader's error, with its context.
[[noreturn]] void crc_mismatch(const lazy_records::file& f, const zip_entry& e) {
  (void)f.zip->read(e, true);  // throws the reader's CRC-32 error
  throw error(errc::corrupt_zip, "zip: CRC-32 mismatch in record " + e.name);
}
}  // namespace

read_observer_scope::read_observer_scope(std::function<void(std::uint64_t)> f)
    : f_(std::move(f)), saved_(read_observer) {
  read_observer = f_ ? &f_ : nullptr;
}
read_observer_scope::~read_observer_scope() { read_observer = saved_; }
const std::function<void(std::uint64_t)>* read_observer_scope::current() noexcept {
  return read_observer;
}

storage lazy_records::read(const record& r) {
  if (r.dcp) return read_dcp_tensor(*r.dcp, r.target);
  const file& f = files[r.file];
  // A stored record of a mapped file is read with pread() straight into the new storage: read
  // through the map, every page would stay resident in this process, so that a command streaming
  // a file tensor by tensor (convert, ls --json, diff) would end up holding the whole file.
  const std::uint64_t at = r.entry ? r.entry->data_offset : r.offset;
  const std::uint64_t n = r.entry ? r.entry->uncompressed_size : r.nbytes;
  const bool stored_in_map = f.source.is_mapped() && (!r.entry || r.entry->method == 0) &&
                             at <= f.source.size() && n <= f.source.size() - at && n > 0;
  // Bound for a GPU, and large enough to go through the staging buffers: read with pread() into
  // them, the CRC-32 computed on the way. (A smaller one would be copied from the map directly:
  // it takes the host copy below instead, so that no page of the map is touched.)
  if (stored_in_map && r.target.is_cuda() && !f.swap && !read_observer_scope::current() &&
      n > device_direct_copy_limit) {
    std::optional<device_upload::crc_check> crc;
    if (auto want = expected_crc(f, r))
      crc = device_upload::crc_check{*want, [&f, &r] { crc_mismatch(f, *r.entry); }};
    storage s;  // declared first: freed after the upload's threads have stopped
    device_upload uploads;
    s = uploads.copy(
        f.source.bytes().subspan(static_cast<std::size_t>(at), static_cast<std::size_t>(n)),
        r.target, device_upload::hold::until_finish, std::move(crc),
        device_upload::in_file{&f.source, at});
    uploads.finish();
    return s;
  }
  if (stored_in_map) {
    storage host = storage::allocate_for_overwrite(static_cast<std::size_t>(n));
    if (const auto* observe = read_observer_scope::current()) {
      constexpr std::uint64_t piece = std::uint64_t{64} << 20;
      for (std::uint64_t done = 0; done < n; done += piece) {
        const std::uint64_t len = std::min(piece, n - done);
        f.source.copy_out(at + done, {host.data() + done, static_cast<std::size_t>(len)});
        (*observe)(len);
      }
    } else {
      f.source.copy_out(at, {host.data(), host.nbytes()});
    }
    if (auto want = expected_crc(f, r); want && crc32({host.data(), host.nbytes()}) != *want)
      crc_mismatch(f, *r.entry);
    if (f.swap) swap_bytes(host.data(), host.nbytes(), r.t);
    if (r.target.is_cpu()) return host;
    device_upload uploads;
    storage s = place_storage({host.data(), host.nbytes()}, r.t, r.target, false, nullptr, uploads);
    uploads.finish();
    return s;
  }
  std::span<const std::byte> bytes;
  if (r.entry) {
    std::unique_lock lock(inflate_mutex, std::defer_lock);
    if (r.entry->method != 0) lock.lock();
    bytes = f.zip->read(*r.entry, f.verify_crc);
  } else {
    bytes = f.source.bytes().subspan(static_cast<std::size_t>(r.offset),
                                     static_cast<std::size_t>(r.nbytes));
  }
  // A copy: the result does not share bytes with other calls' (checkpoint.hpp).
  device_upload uploads;
  storage s = place_storage(bytes, r.t, r.target, f.swap, nullptr, uploads);
  uploads.finish();
  return s;
}

bool lazy_records::read_into(const record& r, std::span<std::byte> out) const {
  if (r.dcp || r.file >= files.size()) return false;
  const file& f = files[r.file];
  const std::uint64_t at = r.entry ? r.entry->data_offset : r.offset;
  const std::uint64_t n = r.entry ? r.entry->uncompressed_size : r.nbytes;
  if (!f.source.is_mapped() || f.swap || (r.entry && r.entry->method != 0) || n != out.size() ||
      at > f.source.size() || n > f.source.size() - at)
    return false;
  f.source.copy_out(at, out);
  if (auto want = expected_crc(f, r); want && crc32(out) != *want) crc_mismatch(f, *r.entry);
  return true;
}

const tensor* lazy_records::by_key(const value& root, const std::string& key) {
  std::call_once(index_once, [&] {
    visit_tensors(
        root, [&](const std::string& k, const value& v) { index.try_emplace(k, v.as_tensor()); });
  });
  auto it = index.find(key);
  return it == index.end() ? nullptr : &it->second;
}

}  // namespace detail

tensor checkpoint::load_tensor(const tensor& t) const {
  if (!records_) return t;
  const detail::lazy_records::record* r = records_->find(t.get_storage());
  if (!r) return t;  // not a placeholder: loaded already, or built by the caller
  return tensor(records_->read(*r), t.dtype(), t.shape(), t.strides(), t.storage_offset(),
                t.requires_grad());
}

tensor checkpoint::load_tensor(std::string_view key) const {
  const std::string want(key);
  if (records_) {
    // Key paths of the root as it was when first asked, indexed once.
    if (const tensor* t = records_->by_key(root, want)) return load_tensor(*t);
  } else {
    std::optional<tensor> found;
    visit_tensors(root, [&](const std::string& k, const value& v) {
      if (!found && k == want) found = v.as_tensor();
    });
    if (found) return *found;
  }
  throw error(errc::invalid_argument, "no tensor has the key path '" + want + "'");
}

device checkpoint::load_device(const storage& s) const {
  if (records_)
    if (const detail::lazy_records::record* r = records_->find(s)) return r->target;
  return s.dev();
}

void checkpoint::materialize() {
  if (!records_) return;
  // Storages shared by several tensors (or named again as another type) are read once.
  std::unordered_map<const void*, storage> done;
  auto read = [&](const storage& placeholder) -> const storage* {
    const detail::lazy_records::record* r = records_->find(placeholder);
    if (!r) return nullptr;
    auto [it, fresh] = done.try_emplace(placeholder.id());
    if (fresh) it->second = records_->read(*r);
    return &it->second;
  };
  detail::transform_values(root, [&](const value& v) -> std::optional<value> {
    if (v.is_tensor()) {
      const tensor& t = v.as_tensor();
      const storage* s = read(t.get_storage());
      if (!s) return std::nullopt;
      return value(
          tensor(*s, t.dtype(), t.shape(), t.strides(), t.storage_offset(), t.requires_grad()),
          v.is_parameter());
    }
    if (v.is_storage()) {
      const storage* s = read(v.as_storage().data);
      if (!s) return std::nullopt;
      storage_value sv = v.as_storage();
      sv.data = *s;
      return value::make_storage(std::move(sv));
    }
    return std::nullopt;
  });
  records_.reset();
}

}  // namespace pthio
