// pthio — torch.export archives (.pt2), read without torch: the weights of an ExportedProgram.
//
// torch.export.save(ep, "model.pt2") has written three layouts over torch 2.x:
//   archive (torch 2.9+)   a zip whose top folder is the archive's name, holding archive_format
//                          ("pt2"), archive_version, byteorder, models/<model>.json (the
//                          serialized program: graph and signature), and per model
//                          data/weights/model_weights_config.json and
//                          data/constants/model_constants_config.json. Each config maps a name
//                          ("l1.weight", a lifted constant "c") to its record (path_name, under
//                          data/weights/ or data/constants/), is_param, use_pickle and
//                          tensor_meta (dtype as the export schema's ScalarType code, sizes,
//                          strides and storage_offset as {"as_int": n}, device, requires_grad,
//                          layout). A raw record holds a storage's bytes; the tensors sharing a
//                          storage (tied weights) name the same record. A use_pickle record is a
//                          torch.save blob (tensor subclasses), or a pickled object constant
//                          (custom_obj_N: a TorchScript object; opaque_obj_N: a plain pickle).
//   archive with pickled weights (torch 2.8)
//                          the same archive, but each model's state dict and constants are one
//                          torch.save blob each: data/weights/<model>.pt,
//                          data/constants/<model>.pt.
//   export zip (torch 2.1 to 2.7)
//                          a plain zip (no top folder): serialized_exported_program.json,
//                          serialized_state_dict.pt (serialized_state_dict.json before 2.3),
//                          serialized_constants.pt, serialized_example_inputs.pt and version.
// load_checkpoint() recognises all three by their records (archive_format says "pt2"; the export
// zip's serialized_exported_program.json), not by the file's extension, and gives for one model an
// OrderedDict: the program's state dict (parameters, as Parameter, and persistent buffers under
// their names, in the config's order), then its constants (lifted tensor constants and
// non-persistent buffers); for several models, an OrderedDict of those by model name. Each such
// dict carries the attribute `signature`: {"inputs": [...], "outputs": [...]}, the program's user
// inputs and its outputs, each {"name", "kind"} plus "dtype" and "shape" (a symbolic dimension as
// its expression, "s0") for a tensor: an opaque summary of what the model takes and gives.
//
// Every field of the configs is checked (corrupt_checkpoint naming the entry and the field): an
// unknown or missing field, a record that is missing, a record whose size is not a multiple of
// the element size, a view reaching outside its record; an unknown dtype code or a layout other
// than strided is unsupported, named. The JSON goes through pthio's strict JSON reader. torch.save
// blobs are loaded as any checkpoint (load_options apply: strict gives the weights-only rules).
// Nothing is executed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pthio/device.hpp"
#include "pthio/dtype.hpp"
#include "pthio/export.hpp"
#include "pthio/tensor.hpp"
#include "pthio/zip.hpp"

namespace pthio {

enum class pt2_layout {
  archive,          // torch 2.9+: configs and one raw record per storage
  archive_pickled,  // torch 2.8: one torch.save blob per model for weights, one for constants
  export_zip,       // torch 2.1 to 2.7: serialized_*.pt in a plain zip
};
PTHIO_API std::string_view pt2_layout_name(pt2_layout l) noexcept;

// A config entry's tensor_meta.
struct pt2_tensor_meta {
  dtype type = dtype::float32;
  int scalar_type = 0;  // the schema's code, as written
  shape_t sizes, strides;
  std::int64_t storage_offset = 0;
  bool requires_grad = false;
  device location;
};

// One entry of a weights or constants config.
struct pt2_payload {
  std::string name;    // the state dict (or constants) name
  std::string record;  // the zip entry holding it
  bool is_param = false;
  bool use_pickle = false;
  std::optional<pt2_tensor_meta> meta;  // absent for object constants
};

struct pt2_model {
  std::string name;            // "model" for torch.export.save
  std::string program_record;  // the serialized ExportedProgram (JSON)
  // archive layout: the configs' entries, in their order
  std::vector<pt2_payload> weights, constants;
  // the pickled layouts: torch.save blobs of the state dict and of the constants ("" if none)
  std::string weights_blob, constants_blob;
  std::string sample_inputs_record;  // a torch.save blob of (args, kwargs); "" if none
};

struct pt2_info {
  pt2_layout layout = pt2_layout::archive;
  std::string root;     // the top folder ("model"); "" for the export zip
  std::string version;  // archive_version (archive layouts) or the schema version (export zip)
  std::vector<pt2_model> models;
  // AOTInductor models packaged in the archive (data/aotinductor/<name>/): compiled code, whose
  // weights pthio reads only when the package keeps them as pickled weights (weights_config.json).
  std::vector<std::string> aoti_models;
};

// What a zip holds when it is a torch.export archive; nullopt when it is not one. Parses the
// configs and checks them (not the records' contents). Throws corrupt_checkpoint / unsupported
// for a damaged archive, with the record's name.
PTHIO_API std::optional<pt2_info> read_pt2_info(const zip_reader& zip);

// A record of a .pt2 that torch unpickles when it loads the archive: a torch.save blob (zip) or a
// bare pickle (an opaque object constant), every data/constants/custom_obj_* and opaque_obj_*
// record (torch goes by the name), and any other record that is itself a zip (a torch.save blob
// torch could be handed). What `pthio scan` checks. A deflated record over pt2_max_deflated
// (torch stores every record) is unsupported rather than inflated to look inside, here and in
// scan.
inline constexpr std::uint64_t pt2_max_deflated = 64u << 20;
struct pt2_pickle {
  std::string record;
  bool torch_save = true;  // a torch.save zip (its .pkl records are the pickles); else a pickle
};
PTHIO_API std::vector<pt2_pickle> pt2_pickles(const zip_reader& zip, const pt2_info& info);

}  // namespace pthio
