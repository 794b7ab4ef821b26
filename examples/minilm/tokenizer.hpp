#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace minilm {

// BERT uncased WordPiece, as the model's fast tokenizer (tokenizers' BertNormalizer,
// BertPreTokenizer, WordPiece) does it.
//
// The ids match Hugging Face's fast tokenizer exactly, including its quirks: the special tokens
// ([PAD], [UNK], [CLS], [SEP], [MASK]) are recognised verbatim in the raw text, "control"
// characters and U+FFFD are deleted without splitting words, accents are stripped by NFD and
// removing nonspacing marks, and the character classes come from the Unicode versions the Rust
// library was built with (see gen_unicode.py).
class tokenizer {
 public:
  // vocab.txt: one token per line, its id the line number from 0. Throws std::runtime_error
  // naming the file when it cannot be read, or lacks [CLS], [SEP] or [UNK].
  explicit tokenizer(const std::string& vocab_path);

  // The word pieces of `text` (UTF-8), without [CLS]/[SEP], no truncation.
  std::vector<std::string> tokenize(std::string_view text) const;

  // [CLS] pieces [SEP] as ids, the pieces truncated so that there are at most max_length ids
  // (max_length >= 2; throws std::invalid_argument otherwise).
  std::vector<std::int32_t> encode(std::string_view text, std::size_t max_length = 512) const;

  // The number of lines of vocab.txt: ids are below it (the model's embedding rows).
  std::size_t vocab_size() const;
  std::int32_t cls_id() const { return cls_id_; }
  std::int32_t sep_id() const { return sep_id_; }
  std::int32_t unk_id() const { return unk_id_; }

 private:
  // Lets the vocabulary be searched with a string_view, so that looking up a candidate piece
  // does not build a std::string.
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };

  struct special_token {
    std::string text;
    std::int32_t id;
  };

  // Appends the ids of the pieces of `text` to `ids`, stopping once ids.size() >= limit (the
  // pieces of later words cannot change earlier ones, so truncation can stop early).
  void append_pieces(std::string_view text, std::size_t limit,
                     std::vector<std::int32_t>& ids) const;
  // Normalizes, pre-tokenizes and WordPiece-splits text that holds no special token.
  void append_segment(std::string_view text, std::size_t limit,
                      std::vector<std::int32_t>& ids) const;
  // Greedy longest-match-first split of one pre-tokenized word of `chars` code points.
  void append_word(std::string_view word, std::size_t chars, std::vector<std::int32_t>& ids,
                   std::string& scratch) const;

  std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>> vocab_;
  std::vector<std::string> tokens_;  // by id
  std::vector<special_token> special_tokens_;
  std::string special_starts_;     // the first bytes of the special tokens, to skip to candidates
  std::size_t longest_token_ = 0;  // in bytes; no longer candidate can match
  std::int32_t cls_id_ = -1;
  std::int32_t sep_id_ = -1;
  std::int32_t unk_id_ = -1;
};

}  // namespace minilm
