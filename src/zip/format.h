// The zip vocabulary shared by the reader (src/zip/reader.cpp) and the writer (src/zip/writer.cpp):
// signatures, fixed record sizes, field offsets, flags, methods, the zip64 extra field and the
// values torch's miniz writes. Section numbers are PKWARE's APPNOTE 6.3.10.
#pragma once

#include <cstdint>

namespace pthio::detail::zip {

// Record signatures, "PK" and two bytes, read and written little-endian (APPNOTE 4.3.7, 4.3.9,
// 4.3.12, 4.3.14, 4.3.15, 4.3.16).
constexpr std::uint32_t local_header_sig = 0x04034b50;    // PK\3\4
constexpr std::uint32_t descriptor_sig = 0x08074b50;      // PK\7\8
constexpr std::uint32_t central_header_sig = 0x02014b50;  // PK\1\2
constexpr std::uint32_t zip64_end_sig = 0x06064b50;       // PK\6\6
constexpr std::uint32_t zip64_locator_sig = 0x07064b50;   // PK\6\7
constexpr std::uint32_t end_sig = 0x06054b50;             // PK\5\6

// Fixed parts of the records, before their variable-length name, extra field and comment.
constexpr std::uint64_t local_header_size = 30;
constexpr std::uint64_t central_header_size = 46;
constexpr std::uint64_t end_size = 22;
constexpr std::uint64_t zip64_end_size = 56;  // the smallest: no extensible data
constexpr std::uint64_t zip64_locator_size = 20;
// The zip64 end record's size field counts the bytes after itself: the signature and the field
// itself (12 bytes) are left out (APPNOTE 4.3.14.1).
constexpr std::uint64_t zip64_end_size_field_excludes = 12;
constexpr std::uint64_t max_comment = 0xFFFF;

// Field offsets from the start of each record.
namespace local_header {
constexpr std::uint64_t method = 8;        // after signature, version needed, flags
constexpr std::uint64_t name_length = 26;  // after time, date, CRC-32 and the two sizes
constexpr std::uint64_t extra_length = 28;
}  // namespace local_header
namespace central_header {
constexpr std::uint64_t flags = 8;
constexpr std::uint64_t method = 10;
constexpr std::uint64_t compressed_size = 20;
}  // namespace central_header
namespace end_record {
constexpr std::uint64_t comment_length = 20;
}  // namespace end_record
namespace zip64_end_record {
constexpr std::uint64_t size = 4;
constexpr std::uint64_t disk = 16;
constexpr std::uint64_t cd_disk = 20;
constexpr std::uint64_t entries_on_disk = 24;
constexpr std::uint64_t entries = 32;
constexpr std::uint64_t cd_size = 40;
constexpr std::uint64_t cd_offset = 48;
}  // namespace zip64_end_record

// A classic field holding its all-ones value means "see the zip64 field" (APPNOTE 4.4.1.4).
constexpr std::uint64_t u16_max = 0xFFFF;
constexpr std::uint64_t u32_max = 0xFFFFFFFF;

// General-purpose flags (APPNOTE 4.4.4).
constexpr std::uint16_t flag_encrypted = 0x0001;
constexpr std::uint16_t flag_descriptor = 0x0008;  // sizes and CRC-32 in a data descriptor
constexpr std::uint16_t flag_utf8 = 0x0800;        // the name is UTF-8

// Compression methods (APPNOTE 4.4.5): the two pthio reads; it writes only stored.
constexpr std::uint16_t method_stored = 0;
constexpr std::uint16_t method_deflate = 8;

// Extra fields: a header of id and length (2 bytes each), then the data.
constexpr std::uint64_t extra_header_size = 4;
constexpr std::uint16_t zip64_extra_id = 0x0001;  // APPNOTE 4.5.3

// Version fields as miniz writes them in the zip64 end record: made by Unix (3), spec 3.0; needed
// 4.5 (zip64). Its local and central headers leave both 0.
constexpr std::uint16_t version_made_by_miniz = 0x031E;
constexpr std::uint16_t version_needed_zip64 = 0x002D;

// torch's alignment of record data (PyTorchStreamWriter's kFieldAlignment), padded with 'Z' bytes
// in an extra field named "FB" whose u16 length caps the padding, so the alignment too.
constexpr std::uint32_t torch_alignment = 64;
constexpr std::uint32_t max_alignment = 32768;
constexpr char padding_field_id[] = "FB";
constexpr char padding_byte = 'Z';

}  // namespace pthio::detail::zip
