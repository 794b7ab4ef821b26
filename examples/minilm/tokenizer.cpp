#include "tokenizer.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>

namespace minilm {
namespace {

#include "unicode_tables.inc"

// WordPiece's max_input_chars_per_word: a longer word becomes a single [UNK].
constexpr std::size_t kMaxInputCharsPerWord = 100;

// The special tokens of BERT's tokenizer.json. tokenizers matches them (those present in the
// vocabulary) in the raw text, before normalization, so "[MASK]" in the input is the mask token
// and not "[", "mask", "]".
constexpr std::array<std::string_view, 5> kSpecialTokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                            "[MASK]"};

template <class Entry, std::size_t N>
constexpr const Entry* find_range(const Entry (&table)[N], char32_t c) {
  const Entry* it = std::lower_bound(std::begin(table), std::end(table), c,
                                     [](const Entry& e, char32_t v) { return e.hi < v; });
  return it != std::end(table) && it->lo <= c ? it : nullptr;
}

// Most text is ASCII, so its classes are looked up in a table built at compile time from the
// generated ones instead of by binary search.
enum : std::uint8_t { kDroppedBit = 1, kWhitespaceBit = 2, kPunctuationBit = 4 };

constexpr std::array<std::uint8_t, 128> make_ascii_classes() {
  std::array<std::uint8_t, 128> classes{};
  for (char32_t c = 0; c < 128; ++c) {
    std::uint8_t bits = 0;
    if (find_range(kDropped, c)) bits |= kDroppedBit;
    if (find_range(kWhitespace, c)) bits |= kWhitespaceBit;
    if (find_range(kPunctuation, c)) bits |= kPunctuationBit;
    classes[c] = bits;
  }
  return classes;
}

constexpr std::array<std::uint8_t, 128> kAsciiClasses = make_ascii_classes();

bool is_dropped(char32_t c) {
  return c < 128 ? (kAsciiClasses[c] & kDroppedBit) != 0 : find_range(kDropped, c) != nullptr;
}

bool is_whitespace(char32_t c) {
  return c < 128 ? (kAsciiClasses[c] & kWhitespaceBit) != 0 : find_range(kWhitespace, c) != nullptr;
}

bool is_punctuation(char32_t c) {
  return c < 128 ? (kAsciiClasses[c] & kPunctuationBit) != 0
                 : find_range(kPunctuation, c) != nullptr;
}

// The first combining mark is U+0300; everything below is class 0 and not Mn.
constexpr char32_t kFirstMark = 0x300;

bool is_nonspacing_mark(char32_t c) {
  return c >= kFirstMark && find_range(kNonspacingMark, c) != nullptr;
}

std::uint8_t combining_class(char32_t c) {
  if (c < kFirstMark) return 0;
  const class_range* r = find_range(kCombiningClass, c);
  return r ? r->value : 0;
}

// tokenizers' is_chinese_char. It is not the Unicode ideograph list: it skips U+2B820..2B91F
// (part of Extension E) and everything after Extension E, and Rust has it exactly so.
bool is_chinese(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Appends the full canonical decomposition of c.
void decompose(char32_t c, std::u32string& out) {
  if (c < 0xC0) {  // the first decomposable character is U+00C0
    out.push_back(c);
    return;
  }
  // Hangul syllables decompose arithmetically into two or three conjoining Jamo. They are not
  // recomposed (tokenizers only runs NFD), so Korean reaches WordPiece as Jamo.
  constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
  constexpr char32_t kTCount = 28, kNCount = 21 * kTCount, kSCount = 19 * kNCount;
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + s % kNCount / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const decomposition* it =
      std::lower_bound(std::begin(kDecomposition), std::end(kDecomposition), c,
                       [](const decomposition& d, char32_t v) { return d.cp < v; });
  if (it == std::end(kDecomposition) || it->cp != c) {
    out.push_back(c);
    return;
  }
  // The table holds one level; the parts may decompose again (U+1E69 -> U+1E63 U+0307 ->
  // s U+0323 U+0307). Depth is at most 4, so recursion is fine.
  decompose(it->first, out);
  if (it->second != 0) decompose(it->second, out);
}

// Canonical ordering: a run of characters with nonzero combining class is stably sorted by class.
// Runs are a few characters long, so insertion sort.
void sort_marks(std::u32string& s, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin + 1; i < end; ++i) {
    const char32_t c = s[i];
    const std::uint8_t cc = combining_class(c);
    std::size_t j = i;
    for (; j > begin && combining_class(s[j - 1]) > cc; --j) s[j] = s[j - 1];
    s[j] = c;
  }
}

// Appends char::to_lowercase(c): per character, so no final-sigma rule.
template <class Emit>
void lowercase(char32_t c, Emit&& emit) {
  if (c < 128) {
    emit(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return;
  }
  for (const multi_lowercase& m : kMultiLowercase) {
    if (m.cp == c) {
      for (char32_t x : m.chars) {
        if (x != 0) emit(x);
      }
      return;
    }
  }
  const case_range* r = find_range(kLowercase, c);
  if (r && (c - r->lo) % r->stride == 0) {
    emit(static_cast<char32_t>(static_cast<std::int32_t>(c) + r->delta));
  } else {
    emit(c);
  }
}

constexpr char32_t kReplacement = 0xFFFD;

// Decodes the code point at s[i] and advances i. A byte that does not start a well-formed UTF-8
// sequence (stray continuation, overlong form, surrogate, beyond U+10FFFF, truncated) decodes to
// U+FFFD on its own, which clean_text then deletes.
char32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  std::size_t len = 0;
  char32_t c = 0;
  char32_t min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    c = b0 & 0x1Fu;
    min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    c = b0 & 0x0Fu;
    min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    c = b0 & 0x07u;
    min = 0x10000;
  }
  if (len == 0 || i + len > s.size()) {
    ++i;
    return kReplacement;
  }
  for (std::size_t k = 1; k < len; ++k) {
    const unsigned char b = byte(i + k);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return kReplacement;
    }
    c = (c << 6) | (b & 0x3Fu);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
    ++i;
    return kReplacement;
  }
  i += len;
  return c;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

bool is_continuation_byte(char b) { return (static_cast<unsigned char>(b) & 0xC0) == 0x80; }

}  // namespace

tokenizer::tokenizer(const std::string& vocab_path) {
  std::ifstream in(vocab_path, std::ios::binary);
  if (!in) throw std::runtime_error("minilm::tokenizer: cannot open vocabulary " + vocab_path);
  std::string line;
  while (std::getline(in, line)) {
    // tokenizers trims trailing whitespace off each line (which also copes with CRLF files);
    // BERT vocabularies have no token ending in non-ASCII whitespace, so ASCII is enough.
    while (!line.empty() && (line.back() == ' ' || (line.back() >= '\t' && line.back() <= '\r'))) {
      line.pop_back();
    }
    const auto id = static_cast<std::int32_t>(tokens_.size());
    longest_token_ = std::max(longest_token_, line.size());
    // A repeated line takes the later id, as in tokenizers.
    vocab_.insert_or_assign(line, id);
    tokens_.push_back(std::move(line));
  }
  if (in.bad()) throw std::runtime_error("minilm::tokenizer: error reading " + vocab_path);

  const auto require = [&](std::string_view token) {
    const auto it = vocab_.find(token);
    if (it == vocab_.end()) {
      throw std::runtime_error("minilm::tokenizer: " + vocab_path + " has no " +
                               std::string(token));
    }
    return it->second;
  };
  cls_id_ = require("[CLS]");
  sep_id_ = require("[SEP]");
  unk_id_ = require("[UNK]");
  for (std::string_view token : kSpecialTokens) {
    if (const auto it = vocab_.find(token); it != vocab_.end()) {
      special_tokens_.push_back({std::string(token), it->second});
      if (special_starts_.find(token[0]) == std::string::npos) special_starts_ += token[0];
    }
  }
}

std::size_t tokenizer::vocab_size() const { return tokens_.size(); }

std::vector<std::string> tokenizer::tokenize(std::string_view text) const {
  std::vector<std::int32_t> ids;
  append_pieces(text, std::numeric_limits<std::size_t>::max(), ids);
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (std::int32_t id : ids) pieces.push_back(tokens_[static_cast<std::size_t>(id)]);
  return pieces;
}

std::vector<std::int32_t> tokenizer::encode(std::string_view text, std::size_t max_length) const {
  if (max_length < 2) {
    throw std::invalid_argument("minilm::tokenizer::encode: max_length must be at least 2");
  }
  std::vector<std::int32_t> ids{cls_id_};
  append_pieces(text, max_length - 1, ids);
  if (ids.size() > max_length - 1) ids.resize(max_length - 1);
  ids.push_back(sep_id_);
  return ids;
}

void tokenizer::append_pieces(std::string_view text, std::size_t limit,
                              std::vector<std::int32_t>& ids) const {
  // Leftmost-longest match of the special tokens, like tokenizers' AddedVocabulary; the text
  // between matches is normalized and split on its own.
  std::size_t segment = 0;
  std::size_t i = 0;
  while (ids.size() < limit) {
    i = text.find_first_of(special_starts_, i);
    if (i == std::string_view::npos) break;
    const special_token* match = nullptr;
    for (const special_token& t : special_tokens_) {
      if (text.substr(i).starts_with(t.text) && (!match || t.text.size() > match->text.size())) {
        match = &t;
      }
    }
    if (!match) {
      ++i;
      continue;
    }
    append_segment(text.substr(segment, i - segment), limit, ids);
    if (ids.size() >= limit) return;
    ids.push_back(match->id);
    i += match->text.size();
    segment = i;
  }
  if (ids.size() < limit) append_segment(text.substr(segment), limit, ids);
}

void tokenizer::append_segment(std::string_view text, std::size_t limit,
                               std::vector<std::int32_t>& ids) const {
  if (text.empty()) return;

  // BertNormalizer, steps 1 to 3: clean_text (delete controls, whitespace to ' '), spaces around
  // CJK ideographs, then NFD with canonical ordering.
  std::u32string chars;
  chars.reserve(text.size() + 8);
  std::size_t marks_begin = 0;  // start of the current run of nonzero combining classes
  const auto push_decomposed = [&](char32_t c) {
    const std::size_t old_size = chars.size();
    decompose(c, chars);
    for (std::size_t k = old_size; k < chars.size(); ++k) {
      if (combining_class(chars[k]) == 0) {
        sort_marks(chars, marks_begin, k);  // a starter ends the run before it
        marks_begin = k + 1;
      }
    }
  };
  for (std::size_t i = 0; i < text.size();) {
    char32_t c = next_code_point(text, i);
    if (is_dropped(c)) continue;
    if (is_whitespace(c)) c = ' ';
    if (is_chinese(c)) {
      push_decomposed(' ');
      push_decomposed(c);
      push_decomposed(' ');
    } else {
      push_decomposed(c);
    }
  }
  sort_marks(chars, marks_begin, chars.size());

  // Step 4 and 5: remove nonspacing marks, lowercase. Then BertPreTokenizer (split on whitespace,
  // isolate punctuation) and WordPiece on each word.
  std::string word;
  std::size_t word_chars = 0;
  std::string scratch;
  const auto flush = [&] {
    if (word_chars == 0) return;
    append_word(word, word_chars, ids, scratch);
    word.clear();
    word_chars = 0;
  };
  const auto add = [&](char32_t c) {
    if (is_whitespace(c)) {
      flush();
    } else if (is_punctuation(c)) {
      flush();
      append_utf8(word, c);
      word_chars = 1;
      flush();
    } else {
      append_utf8(word, c);
      ++word_chars;
    }
  };
  for (std::size_t k = 0; k < chars.size(); ++k) {
    // Stopping at a word boundary once enough pieces exist keeps truncation cheap.
    if (word_chars == 0 && ids.size() >= limit) return;
    if (is_nonspacing_mark(chars[k])) continue;
    lowercase(chars[k], add);
  }
  flush();
}

void tokenizer::append_word(std::string_view word, std::size_t chars,
                            std::vector<std::int32_t>& ids, std::string& scratch) const {
  if (chars > kMaxInputCharsPerWord) {
    ids.push_back(unk_id_);
    return;
  }
  const std::size_t first_piece = ids.size();
  std::size_t start = 0;
  while (start < word.size()) {
    // Longest match first: try word[start, end) for decreasing end, "##"-prefixed after the
    // first piece. Candidates longer than the longest vocabulary entry cannot match, so start
    // from that length (backed up to a character boundary).
    const std::size_t prefix = start > 0 ? 2 : 0;
    const std::size_t max_bytes = longest_token_ > prefix ? longest_token_ - prefix : 0;
    std::size_t end = std::min(word.size(), start + max_bytes);
    while (end > start && end < word.size() && is_continuation_byte(word[end])) --end;
    std::int32_t id = -1;
    while (end > start) {
      std::string_view candidate = word.substr(start, end - start);
      if (prefix != 0) {
        scratch.assign("##");
        scratch.append(candidate);
        candidate = scratch;
      }
      if (const auto it = vocab_.find(candidate); it != vocab_.end()) {
        id = it->second;
        break;
      }
      --end;  // drop the last character, not just its last byte
      while (end > start && is_continuation_byte(word[end])) --end;
    }
    if (id < 0) {
      // No piece fits at `start`: the whole word is unknown.
      ids.resize(first_piece);
      ids.push_back(unk_id_);
      return;
    }
    ids.push_back(id);
    start = end;
  }
}

}  // namespace minilm
