// checkpoint::load_slice: the elements a slice selects, gathered from memory (eager and mmap
// checkpoints, deflated records) or read from the file in as few reads as the layout allows (lazy
// checkpoints), so that a rank's rows of a weight cost the rows, not the weight.
#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>

#include "../byte_reader.h"
#include "internal.h"

namespace pthio {

namespace detail {

namespace {

// A strided selection of a storage as contiguous runs: `run` elements contiguous in both the
// storage and the result, repeated over `outer` (an odometer of extents and strides, outermost
// first, ordered by storage stride so that a transposed view is walked in storage order).
struct gather_plan {
  shape_t shape;           // the result's shape
  std::int64_t base = 0;   // element offset of the first selected element in the storage
  std::int64_t numel = 0;  // elements selected
  std::int64_t run = 1;    // elements per run
  struct dim {
    std::int64_t extent, src, dst;  // strides in elements
  };
  std::vector<dim> outer;
};

gather_plan plan_for(const tensor& t, const std::vector<resolved_dim>& dims) {
  gather_plan p;
  p.base = t.storage_offset();
  p.numel = 1;
  std::vector<gather_plan::dim> kept;
  for (std::size_t d = 0; d < dims.size(); ++d) {
    const resolved_dim& r = dims[d];
    if (r.keep) p.shape.push_back(r.count);
    p.numel *= r.count;  // the result fits: it is a part of a tensor that does
    if (r.count == 0) continue;
    p.base += r.start * t.strides()[d];
    if (r.keep && r.count > 1) kept.push_back({r.count, t.strides()[d] * r.step, 0});
  }
  if (p.numel == 0) {
    p.base = t.storage_offset();
    return p;
  }
  // Strides of the result (row-major), for the kept dimensions of extent > 1 in order.
  std::int64_t acc = 1;
  for (std::size_t i = kept.size(); i-- > 0;) {
    kept[i].dst = acc;
    acc *= kept[i].extent;
  }
  // Storage order: largest stride outermost (stable, so equal strides keep the result's order).
  std::stable_sort(kept.begin(), kept.end(),
                   [](const auto& a, const auto& b) { return a.src > b.src; });
  // The innermost dimensions contiguous in both become one run.
  while (!kept.empty() && kept.back().src == p.run && kept.back().dst == p.run) {
    p.run *= kept.back().extent;
    kept.pop_back();
  }
  // Neighbours that nest exactly (outer stride = inner extent * inner stride, on both sides)
  // become one dimension: fewer odometer steps, same runs.
  for (const auto& d : kept) {
    if (!p.outer.empty()) {
      auto& o = p.outer.back();
      if (o.src == d.extent * d.src && o.dst == d.extent * d.dst) {
        o = {o.extent * d.extent, d.src, d.dst};
        continue;
      }
    }
    p.outer.push_back(d);
  }
  return p;
}

// Calls fn(source element offset, result element offset) for each run, in storage order.
template <class F>
void for_each_run(const gather_plan& p, F&& fn) {
  if (p.numel == 0) return;
  const std::size_t k = p.outer.size();
  std::vector<std::int64_t> idx(k, 0);
  std::int64_t src = p.base, dst = 0;
  while (true) {
    fn(src, dst);
    std::size_t d = k;
    while (d-- > 0) {
      if (++idx[d] < p.outer[d].extent) {
        src += p.outer[d].src;
        dst += p.outer[d].dst;
        break;
      }
      src -= (p.outer[d].extent - 1) * p.outer[d].src;
      dst -= (p.outer[d].extent - 1) * p.outer[d].dst;
      idx[d] = 0;
    }
    if (d == static_cast<std::size_t>(-1)) return;
  }
}

// Reads runs of a record through `read(offset, out)`, merging them: a run that continues the
// previous one in both the file and the result extends a single direct read into the result;
// runs shorter than `small_run` bytes with gaps under `max_gap` bytes between them are read as one
// span into a bounce buffer (at most `max_span` bytes) and copied out, so that a column of 2-byte
// elements is not one read each. Longer runs (a row's columns) are read exactly, one read each:
// the bytes read are then the bytes selected.
class run_reader {
 public:
  static constexpr std::uint64_t small_run = 256;
  static constexpr std::uint64_t max_gap = 4096;
  static constexpr std::uint64_t max_span = std::uint64_t{4} << 20;
  static constexpr std::size_t max_runs = 1 << 16;

  explicit run_reader(std::function<void(std::uint64_t, std::span<std::byte>)> read)
      : read_(std::move(read)) {}

  void add(std::uint64_t src, std::byte* dst, std::uint64_t n) {
    if (!runs_.empty()) {
      run& last = runs_.back();
      if (src == hi_ && dst == last.dst + last.n &&
          (runs_.size() == 1 || hi_ + n - lo_ <= max_span)) {
        last.n += n;
        hi_ += n;
        return;
      }
      if (n < small_run && last.n < small_run && src >= hi_ && src - hi_ < max_gap &&
          src + n - lo_ <= max_span && runs_.size() < max_runs) {
        runs_.push_back({src, dst, n});
        hi_ = src + n;
        return;
      }
      flush();
    }
    runs_.push_back({src, dst, n});
    lo_ = src;
    hi_ = src + n;
  }

  void flush() {
    if (runs_.empty()) return;
    if (runs_.size() == 1) {
      read_(lo_, {runs_[0].dst, static_cast<std::size_t>(runs_[0].n)});
    } else {
      bounce_.resize(static_cast<std::size_t>(hi_ - lo_));
      read_(lo_, bounce_);
      for (const run& r : runs_)
        std::memcpy(r.dst, bounce_.data() + (r.src - lo_), static_cast<std::size_t>(r.n));
    }
    runs_.clear();
  }

 private:
  struct run {
    std::uint64_t src;
    std::byte* dst;
    std::uint64_t n;
  };
  std::function<void(std::uint64_t, std::span<std::byte>)> read_;
  std::vector<run> runs_;
  std::uint64_t lo_ = 0, hi_ = 0;
  std::vector<std::byte> bounce_;
};

// The result tensor on the host, filled by `fill(result bytes)`.
tensor host_result(const tensor& t, const gather_plan& p,
                   const std::function<void(std::byte*)>& fill) {
  tensor out = tensor::zeros(t.dtype(), p.shape);
  out.set_requires_grad(t.requires_grad());
  if (p.numel > 0) fill(out.raw_data());
  return out;
}

// A meta tensor of the result's shape (map_location "meta": nothing read).
tensor meta_result(const tensor& t, const gather_plan& p) {
  const std::size_t nbytes = static_cast<std::size_t>(p.numel) * t.element_size();
  return tensor(storage::borrow(nullptr, nbytes, t.dev()), t.dtype(), p.shape,
                contiguous_strides(p.shape), 0, t.requires_grad());
}

// Gathers from bytes in memory holding the storage (the storage's element 0 at `storage`).
void gather_memory(const gather_plan& p, std::size_t es, const std::byte* storage, std::byte* out) {
  const std::size_t run_bytes = static_cast<std::size_t>(p.run) * es;
  for_each_run(p, [&](std::int64_t src, std::int64_t dst) {
    std::memcpy(out + static_cast<std::size_t>(dst) * es,
                storage + static_cast<std::size_t>(src) * es, run_bytes);
  });
}

}  // namespace

tensor lazy_records::read_slice(const record& r, const tensor& t,
                                const std::vector<resolved_dim>& dims) {
  if (r.dcp) {
    // A DCP tensor: only the chunks the slice meets are read (the placeholder is the whole,
    // contiguous tensor; any other view of it is assembled and sliced on the host).
    if (t.storage_offset() == 0 && t.is_contiguous() && t.nbytes() == r.nbytes)
      return read_dcp_slice(*r.dcp, dims, r.target);
    const gather_plan p = plan_for(t, dims);
    if (r.target.type() == device_type::meta) return meta_result(t, p);
    const storage whole = read_dcp_tensor(*r.dcp, device(device_type::cpu));
    tensor out = host_result(
        t, p, [&](std::byte* dst) { gather_memory(p, t.element_size(), whole.data(), dst); });
    return r.target.is_cpu() ? out : out.to(r.target);
  }
  // The whole view must lie inside its record before any part of it is read (a placeholder has
  // no bytes to check it against when the pickle builds it): with it inside, every element index
  // below is under the record's size, so the plan's arithmetic cannot overflow either.
  if (t.numel() > 0) {
    std::uint64_t last = static_cast<std::uint64_t>(t.storage_offset()), need = 0;
    bool fits = true;
    for (std::size_t d = 0; d < t.shape().size() && fits; ++d) {
      std::uint64_t span = 0;
      fits = checked_mul(static_cast<std::uint64_t>(t.shape()[d] - 1),
                         static_cast<std::uint64_t>(t.strides()[d]), span) &&
             checked_add(last, span, last);
    }
    fits = fits && checked_add(last, 1, need) && checked_mul(need, t.element_size(), need) &&
           need <= r.nbytes;
    if (!fits)
      throw error(errc::corrupt_checkpoint,
                  "tensor view of record '" + r.key + "' (" + shape_string(t.shape()) +
                      ", offset " + std::to_string(t.storage_offset()) +
                      ") reaches past the record's " + std::to_string(r.nbytes) + " bytes");
  }
  const gather_plan p = plan_for(t, dims);
  if (r.target.type() == device_type::meta) return meta_result(t, p);
  if (!r.target.is_cpu() && !r.target.is_cuda())
    throw error(errc::unsupported, "cannot load storages to device " + r.target.str() +
                                       "; map them to \"cpu\" or \"cuda:N\" with map_location");
  const file& f = files[r.file];
  const std::size_t es = t.element_size();
  tensor out;
  if (f.swap && element_size(r.t) != es) {
    // A big-endian record is swapped by its storage's element type (as the whole-record read and
    // torch swap it); a view of another element size (bytes of a float storage) cannot be
    // swapped piece by piece: the record is read whole, swapped, and the slice gathered from it.
    storage whole = read(r);
    out = host_result(t, p, [&](std::byte* dst) { gather_memory(p, es, whole.data(), dst); });
    return r.target.is_cpu() ? out : out.to(r.target);
  }
  if (r.entry && r.entry->method != 0) {
    // A deflated record cannot be read at an offset: inflated whole (the zip reader keeps the
    // inflated copy), checked, and gathered from memory.
    std::span<const std::byte> bytes;
    {
      std::lock_guard lock(inflate_mutex);
      bytes = f.zip->read(*r.entry, f.verify_crc);
    }
    out = host_result(t, p, [&](std::byte* dst) { gather_memory(p, es, bytes.data(), dst); });
  } else {
    // Stored zip records and safetensors/raw ranges: pread() at the record's offset, which neither
    // faults the file's pages into this process nor reads past what the runs need.
    const std::uint64_t start = r.entry ? r.entry->data_offset : r.offset;
    const byte_source& src = f.source;
    out = host_result(t, p, [&](std::byte* dst) {
      run_reader reader(
          [&](std::uint64_t off, std::span<std::byte> into) { src.copy_out(start + off, into); });
      const std::uint64_t run_bytes = static_cast<std::uint64_t>(p.run) * es;
      for_each_run(p, [&](std::int64_t s, std::int64_t d) {
        reader.add(static_cast<std::uint64_t>(s) * es, dst + static_cast<std::size_t>(d) * es,
                   run_bytes);
      });
      reader.flush();
    });
  }
  if (f.swap) swap_bytes(out.raw_data(), out.nbytes(), t.dtype());
  return r.target.is_cpu() ? out : out.to(r.target);
}

}  // namespace detail

tensor checkpoint::load_slice(const tensor& t, const pthio::slice& s, std::string_view key) const {
  const std::vector<resolved_dim> dims = s.resolve(t.shape(), key);
  if (records_) {
    if (const detail::lazy_records::record* r = records_->find(t.get_storage()))
      return records_->read_slice(*r, t, dims);
  }
  // Loaded already: sliced in memory (a view of the slice, copied out).
  const detail::gather_plan p = detail::plan_for(t, dims);
  if (t.dev().type() == device_type::meta) return detail::meta_result(t, p);
  if (!t.dev().is_cpu()) {
    // A device tensor: the slice as a view, copied by the device.
    shape_t strides;
    for (std::size_t d = 0; d < dims.size(); ++d)
      // (A step past the end selects at most one element: its stride does not matter, and the
      // product could overflow.)
      if (dims[d].keep)
        strides.push_back(dims[d].count > 1 ? t.strides()[d] * dims[d].step : t.strides()[d]);
    return t.as_strided(p.shape, strides, p.base).clone();
  }
  const std::byte* storage = t.get_storage().data();
  return detail::host_result(
      t, p, [&](std::byte* dst) { detail::gather_memory(p, t.element_size(), storage, dst); });
}

tensor checkpoint::load_elements(const tensor& t) const {
  if (!records_ || !records_->find(t.get_storage())) return load_tensor(t);
  if (t.nbytes() * 2 >= t.get_storage().nbytes()) return load_tensor(t);
  return load_slice(t, pthio::slice{});
}

tensor checkpoint::load_slice(std::string_view key, const pthio::slice& s) const {
  const std::string want(key);
  if (records_) {
    if (const tensor* t = records_->by_key(root, want)) return load_slice(*t, s, key);
  } else {
    std::optional<tensor> found;
    visit_tensors(root, [&](const std::string& k, const value& v) {
      if (!found && k == want) found = v.as_tensor();
    });
    if (found) return load_slice(*found, s, key);
  }
  throw error(errc::invalid_argument, "no tensor has the key path '" + want + "'");
}

}  // namespace pthio
