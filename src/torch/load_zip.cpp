// The zip format (torch >= 1.6) and TorchScript archives: <archive>/data.pkl, whose persistent
// ids name records under <archive>/data/, with <archive>/byteorder for big-endian files.
#include <cstring>

#include "internal.h"
#include "pthio/cuda.hpp"

namespace pthio::detail {

storage zip_storages::make(const zip_entry& e, const std::string& key, dtype t,
                           const device& target) {
  if (lazy) return lazy->placeholder({key, &e, 0, e.uncompressed_size, t, target, 0, {}});
  const bool verify = opt.verify_crc && opt.mode == load_mode::eager;
  // A record bound for a GPU streams through pinned buffers, its CRC-32 computed on the way
  // rather than in a pass of its own.
  const bool crc_on_the_way = verify && target.is_cuda() && !swap && e.crc32 != 0;
  std::optional<device_upload::crc_check> crc;
  if (crc_on_the_way)
    crc = device_upload::crc_check{e.crc32, [z = &zip, &e] {
                                     z->read(e, true);  // throws the reader's CRC-32 error
                                     throw error(errc::corrupt_zip, "zip: CRC-32 mismatch", e.name);
                                   }};
  const bool view = zero_copy && e.method == 0 && target.is_cpu();
  if (defer_copies && !view && e.method == 0 && target.is_cpu()) {
    std::span<const std::byte> bytes = zip.read(e, false);  // checked by copies.finish()
    storage host = storage::allocate_for_overwrite(bytes.size());
    copies.add(zip, e, bytes, host.data(), t, swap, verify);
    return host;
  }
  // The record's bytes (the mapped file, or the reader's inflated copy) outlive uploads.finish().
  auto bytes = zip.read(e, verify && !crc_on_the_way);
  // A stored record of a mapped file, bound for a GPU: read with pread() into the pinned buffers
  // when the staging options ask for it (cuda.hpp: memcpy from the map measured faster).
  std::optional<device_upload::in_file> file;
  if (target.is_cuda() && !swap && e.method == 0 && zip.source().is_mapped() &&
      pthio::cuda::get_staging_options().pread_mapped_files)
    file = device_upload::in_file{&zip.source(), e.data_offset};
  return place_storage(bytes, t, target, swap, view ? zip.owner_of(e) : nullptr, uploads,
                       std::move(crc), file);
}

zip_placement plan_placement(const byte_source& src, std::shared_ptr<const zip_reader> zip,
                             std::endian order, const load_options& opt) {
  zip_placement p;
  p.swap = order == std::endian::big;
  p.zero_copy = opt.mode == load_mode::mmap && (src.is_mapped() || src.owns_bytes()) && !p.swap;
  if (opt.mode == load_mode::lazy) {
    p.lazy = std::make_shared<lazy_records>();
    p.lazy->files.push_back({src, std::move(zip), p.swap, opt.verify_crc});
  }
  return p;
}

std::endian read_byteorder(const zip_reader& zip, const std::string& prefix,
                           const load_options& opt) {
  const zip_entry* bo = zip.find(prefix + "byteorder");
  if (!bo) return std::endian::little;
  if (bo->uncompressed_size > 6)  // "little" or "big": refused before a deflated one is inflated
    throw error(errc::corrupt_checkpoint,
                "byteorder record of " + std::to_string(bo->uncompressed_size) +
                    " bytes is neither 'little' nor 'big'",
                zip.source().name() + ": " + bo->name);
  auto b = zip.read(*bo, opt.verify_crc);
  std::string order(reinterpret_cast<const char*>(b.data()), b.size());
  if (order != "little" && order != "big")
    throw error(errc::corrupt_checkpoint, "byteorder record says '" + order.substr(0, 16) + "'",
                zip.source().name() + ": " + bo->name);
  return order == "big" ? std::endian::big : std::endian::little;
}

checkpoint load_zip(const byte_source& src, const load_options& opt, bool allow_pt2) {
  auto zip_ptr = std::make_shared<const zip_reader>(src, opt.zip);
  const zip_reader& zip = *zip_ptr;
  // A torch.export archive (its archive_format says "pt2", or torch 2.1-2.7's export zip), told by
  // those records as torch.export.load tells it, whatever else the zip holds.
  if (allow_pt2)
    if (auto info = read_pt2_info(zip)) return load_pt2(src, zip_ptr, *info, opt);
  checkpoint ck;
  const zip_entry* pkl = nullptr;
  for (const auto& e : zip.entries()) {
    auto slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      pkl = &e;
      ck.archive_name = e.name.substr(0, slash);
      break;
    }
  }
  if (!pkl) {
    if (zip.find("model.json"))
      throw error(errc::unsupported,
                  "TorchScript archives from torch <= 1.3 (model.json) are not supported");
    throw error(errc::corrupt_checkpoint, "no <archive>/data.pkl record: not a torch checkpoint",
                src.name());
  }
  // A deflated record is inflated whole before it is read: a pickle record may not make a load
  // hold more than the file's bytes and limits.max_memory (a zip bomb in data.pkl).
  if (pkl->method != 0 && pkl->uncompressed_size > opt.limits.max_memory)
    throw error(errc::limit_exceeded,
                "deflated pickle record inflates to " + std::to_string(pkl->uncompressed_size) +
                    " bytes, more than max_memory (" + std::to_string(opt.limits.max_memory) +
                    " bytes)",
                pkl->name);
  const std::string prefix = ck.archive_name + "/";
  ck.format = (zip.find(prefix + "constants.pkl") || zip.find(prefix + "code/"))
                  ? checkpoint_format::torchscript
                  : checkpoint_format::zip;
  if (ck.format == checkpoint_format::zip)
    for (const auto& e : zip.entries())
      if (e.name.starts_with(prefix + "code/")) ck.format = checkpoint_format::torchscript;
  ck.byte_order = read_byteorder(zip, prefix, opt);
  auto [swap, zero_copy, lazy] = plan_placement(src, zip_ptr, ck.byte_order, opt);
  // The storages loaded so far (their bytes are shared with the result); by zip entry index (one
  // record is one storage), where each is in `loaded` plus one (0: not loaded yet).
  std::vector<storage_value> loaded;
  loaded.reserve(zip.entries().size());  // at most one per record: no regrowth, no moves
  std::vector<std::uint32_t> loaded_at(zip.entries().size(), 0);
  zip_storages storages{zip, opt, swap, zero_copy, lazy.get(), {}, true, {}};

  unpickle_options u = pickle_options_for(opt, pkl->name);
  std::string rec = prefix + "data/";  // the record name, rebuilt in place for each storage
  const std::size_t rec_stem = rec.size();
  pid_memory last_pid;
  // The storage a persistent id names, loaded on first use: its index in `loaded`, and whether
  // it was loaded before.
  auto storage_of = [&](const storage_spec& s) -> std::pair<std::size_t, bool> {
    rec.resize(rec_stem);
    rec += s.key;
    const zip_entry* e = zip.find(rec);
    if (!e) throw error(errc::corrupt_checkpoint, "storage record " + rec + " is missing");
    std::uint32_t& slot = loaded_at[static_cast<std::size_t>(e - zip.entries().data())];
    if (slot != 0) {
      const storage_value& cached = loaded[slot - 1];
      // torch 2.x may name one record as a typed storage and as an UntypedStorage (byte views);
      // each name sees the bytes with its own element type.
      if (s.nbytes > cached.data.nbytes())
        throw error(errc::corrupt_checkpoint,
                    "storage '" + s.key + "' is named again with " + std::to_string(s.nbytes) +
                        " bytes, more than its record's " + std::to_string(cached.data.nbytes()));
      return {slot - 1, true};
    }
    if (e->uncompressed_size < s.nbytes)
      throw error(errc::corrupt_checkpoint,
                  "storage record " + rec + " holds " + std::to_string(e->uncompressed_size) +
                      " bytes but " + std::to_string(s.numel) + " elements of " +
                      std::string(dtype_name(s.t)) + " need " + std::to_string(s.nbytes));
    // The whole record: another persistent id may name it with a larger element type.
    device target = opt.map_location.apply(s.location);
    check_target(target, s.location);
    storage_value sv;
    sv.data = storages.make(*e, s.key, s.t, target);
    sv.dtype = s.t;
    sv.numel = s.numel;
    sv.key = s.key;
    sv.location = s.location;
    loaded.push_back(std::move(sv));
    slot = static_cast<std::uint32_t>(loaded.size());
    return {loaded.size() - 1, false};
  };
  u.persistent_load = [&](const value& pid) -> value {
    storage_spec s = parse_pid(pid, false, last_pid);
    auto [i, again] = storage_of(s);
    if (!again) return value::make_storage(loaded[i]);
    storage_value named = loaded[i];
    named.dtype = s.t;
    named.numel = s.numel;
    return value::make_storage(std::move(named));
  };
  // torch's tensor records, read by the unpickler without their tuples: the same storage and the
  // same tensor as persistent_load and _rebuild_tensor_v2's handler would make.
  if (tensor_record_fast_path())
    u.load_tensor_record = [&](const tensor_record& r) -> std::optional<value> {
      storage_spec s = parse_pid_fields(*r.storage_class, r.key, r.location, r.numel, last_pid);
      const storage_value& sv = loaded[storage_of(s).first];
      value t(tensor(sv.data, s.t, shape_t(r.size.begin(), r.size.end()),
                     shape_t(r.stride.begin(), r.stride.end()), r.storage_offset, r.requires_grad));
      ++tensor_records_read();
      return t;
    };
  ck.root = run_unpickle(zip.read(*pkl, opt.verify_crc), u, nullptr);
  storages.copies.finish(opt.threads);
  storages.uploads.finish();
  if (lazy && !lazy->empty()) lazy_records::attach(ck, std::move(lazy));
  return ck;
}

}  // namespace pthio::detail
