// pthio — the pickle opcodes, once, for the reader (unpickler.cpp, memo_scan.cpp) and the writer
// (pickler.cpp): each opcode's name and byte as Python's Lib/pickletools.py spells them, and the
// layout of the argument that follows it in the stream.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace pthio::detail {

// How the bytes after an opcode are laid out (pickletools' ArgumentDescriptor, by shape):
//   none     no argument
//   fixed    `size` bytes (uint1, uint2, int4, uint4, uint8, float8)
//   counted  a little-endian count of `size` bytes, then that many bytes (long1, long4, string1,
//            string4, bytes1/4/8, unicodestring1/4/8, bytearray8)
//   lines    `size` newline-terminated lines (decimalnl_*, floatnl, stringnl*, unicodestringnl)
enum class pickle_arg : std::uint8_t { none, fixed, counted, lines };

// X(name, byte, argument layout, size)
#define PTHIO_PICKLE_OPCODES(X)                                                                    \
  X(MARK, '(', none, 0)                                                                            \
  X(STOP, '.', none, 0) X(POP, '0', none, 0) X(POP_MARK, '1', none, 0) X(DUP, '2', none, 0)        \
      X(FLOAT, 'F', lines, 1) X(INT, 'I', lines, 1) X(BININT, 'J', fixed, 4)                       \
          X(BININT1, 'K', fixed, 1) X(LONG, 'L', lines, 1) X(BININT2, 'M', fixed, 2)               \
              X(NONE, 'N', none, 0) X(PERSID, 'P', lines, 1) X(BINPERSID, 'Q', none, 0) X(         \
                  REDUCE, 'R', none, 0) X(STRING, 'S', lines, 1) X(BINSTRING, 'T', counted, 4)     \
                  X(SHORT_BINSTRING, 'U', counted, 1) X(UNICODE, 'V', lines, 1) X(                 \
                      BINUNICODE, 'X', counted, 4) X(APPEND, 'a', none, 0) X(BUILD, 'b', none, 0)  \
                      X(GLOBAL, 'c', lines, 2) X(DICT, 'd', none, 0) X(EMPTY_DICT, '}', none, 0)   \
                          X(APPENDS, 'e', none, 0) X(GET, 'g', lines, 1) X(BINGET, 'h', fixed, 1)  \
                              X(INST, 'i', lines, 2) X(LONG_BINGET, 'j', fixed, 4) X(              \
                                  LIST, 'l', none, 0) X(EMPTY_LIST, ']', none, 0)                  \
                                  X(OBJ, 'o', none, 0) X(PUT, 'p', lines, 1) X(                    \
                                      BINPUT, 'q', fixed, 1) X(LONG_BINPUT, 'r', fixed, 4)         \
                                      X(SETITEM, 's', none, 0) X(TUPLE, 't', none, 0) X(           \
                                          EMPTY_TUPLE, ')', none, 0) X(SETITEMS, 'u', none, 0)     \
                                          X(BINFLOAT, 'G', fixed, 8) X(PROTO, 0x80, fixed, 1) X(   \
                                              NEWOBJ, 0x81, none, 0) X(EXT1, 0x82, fixed, 1)       \
                                              X(EXT2, 0x83, fixed, 2) X(EXT4, 0x84, fixed, 4) X(   \
                                                  TUPLE1, 0x85,                                    \
                                                  none,                                            \
                                                  0) X(TUPLE2, 0x86, none,                         \
                                                       0) X(TUPLE3, 0x87, none, 0)                 \
                                                  X(NEWTRUE, 0x88, none,                           \
                                                    0) X(NEWFALSE, 0x89, none,                     \
                                                         0) X(LONG1, 0x8a, counted, 1)             \
                                                      X(LONG4, 0x8b, counted,                      \
                                                        4) X(BINBYTES, 'B', counted,               \
                                                             4) X(SHORT_BINBYTES, 'C', counted, 1) \
                                                          X(SHORT_BINUNICODE, 0x8c, counted, 1) X( \
                                                              BINUNICODE8, 0x8d, counted,          \
                                                              8) X(BINBYTES8, 0x8e, counted,       \
                                                                   8) X(EMPTY_SET, 0x8f, none, 0)  \
                                                              X(ADDITEMS, 0x90, none,              \
                                                                0) X(FROZENSET, 0x91, none, 0)     \
                                                                  X(NEWOBJ_EX, 0x92, none, 0) X(   \
                                                                      STACK_GLOBAL, 0x93, none, 0) \
                                                                      X(MEMOIZE, 0x94, none, 0) X( \
                                                                          FRAME, 0x95, fixed, 8)   \
                                                                          X(BYTEARRAY8, 0x96,      \
                                                                            counted,               \
                                                                            8) X(NEXT_BUFFER,      \
                                                                                 0x97, none, 0)    \
                                                                              X(READONLY_BUFFER,   \
                                                                                0x98, none, 0)

enum class opcode : std::uint8_t {
#define PTHIO_X(name, code, arg, size) name = code,
  PTHIO_PICKLE_OPCODES(PTHIO_X)
#undef PTHIO_X
};

constexpr std::uint8_t op(opcode o) noexcept { return static_cast<std::uint8_t>(o); }

constexpr std::string_view opcode_name(std::uint8_t code) noexcept {
  switch (static_cast<opcode>(code)) {
#define PTHIO_X(name, code, arg, size) \
  case opcode::name: return #name;
    PTHIO_PICKLE_OPCODES(PTHIO_X)
#undef PTHIO_X
  }
  return "unknown opcode";
}

// Every byte's argument layout; `known` is false for a byte that is no opcode.
struct opcode_layout {
  pickle_arg arg = pickle_arg::none;
  std::uint8_t size = 0;
  bool known = false;
};

constexpr std::array<opcode_layout, 256> opcode_layouts() {
  std::array<opcode_layout, 256> t{};
#define PTHIO_X(name, code, how, n) t[code] = {pickle_arg::how, n, true};
  PTHIO_PICKLE_OPCODES(PTHIO_X)
#undef PTHIO_X
  return t;
}

}  // namespace pthio::detail
