// Walking values without recursion (not part of the public API).
#pragma once

#include <cstddef>
#include <span>

#include "pthio/value.hpp"

namespace pthio::detail {

// The i-th value directly inside a container, in rendering order (list and tuple items; a dict's
// keys and values alternately, then its attributes' values; an object's args, state, list items,
// then dict items' keys and values alternately); nullptr past the last, and for any other value.
const value* child_at(const value& v, std::size_t i);

// Construction and surgery the public API does not offer.
struct value_access {
  // A tuple of the n values at `items`, moved from there (one block, from this thread's value
  // pool while a load runs).
  static value tuple_moving(value* items, std::size_t n);
  // A tuple of n items, the i-th being item(i) (defined in value.cpp, for its own uses).
  template <class F>
  static value tuple_of(std::size_t n, F&& item);
  // A tuple's items, writable: only for the sole owner of a tuple taking it apart, or a walk that
  // replaces values in place (transform_values).
  static std::span<value> mutable_items(const value& tuple) noexcept;
  // Whether another value also holds v's list, tuple, dict or object (false for anything else).
  static bool held_elsewhere(const value& v) noexcept;
};

}  // namespace pthio::detail
