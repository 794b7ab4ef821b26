#!/usr/bin/python3
"""Writes unicode_tables.inc, the Unicode data of the minilm example's BERT tokenizer.

Rerun it from the repository root after changing it:

    /usr/bin/python3 examples/minilm/gen_unicode.py

It writes examples/minilm/unicode_tables.inc next to itself. It needs a Python whose unicodedata
is Unicode 14.0.0 (Debian 12's python3.11), because the correction lists below are differences
against that version; with another version it stops rather than write wrong tables.

The tokenizer has to reproduce Hugging Face `tokenizers` (Rust) exactly, and that library does
not use one Unicode version but three:

  * unicode_categories 0.1.1 (2016, about Unicode 9.0): BertNormalizer's "control" test is its
    is_other() = Cc | Cf | Co (NOT Cn: unassigned code points are kept), the pre-tokenizer's
    is_punctuation() (P*), and the accent stripping's is_mark_nonspacing() (Mn).
  * unicode-normalization-alignments 0.1.12 (Unicode 9.0): the NFD decomposition and the
    canonical combining classes.
  * the Rust standard library of the compiler that built the wheel (Unicode 17 for 0.23.3):
    char::is_whitespace (the White_Space property) and char::to_lowercase.

So the tables are Unicode 14 from unicodedata, moved back to those crates' data by the explicit
lists below (computed once by diffing the crates' own tables against unicodedata 14, and checked
code point by code point against tokenizers 0.23), and moved forward for the newer lowercase
mappings of the standard library.
"""

import os
import sys
import unicodedata

# --- Corrections from unicodedata 14.0 to the data the Rust library uses -------------------------
# Ranges are written "XXXX" or "XXXX-YYYY" (hex, inclusive).

# Cc/Cf/Co in 14.0 that unicode_categories 0.1.1 does not call "other" (added after its tables).
OTHER_NOT_IN_RUST = "0890-0891 08E2 110CD 13430-13438"

# Punctuation in unicode_categories 0.1.1 but not in 14.0 (re-categorised since: Mn, So).
PUNCT_ONLY_IN_RUST = "166D 111C9"
# Punctuation in 14.0 that unicode_categories 0.1.1 does not know (assigned after its tables).
PUNCT_NOT_IN_RUST = (
    "061D 09FD 0A76 0C77 0C84 1B7D-1B7E 2E43-2E4F 2E52-2E5D 10EAD 10F55-10F59 10F86-10F89 "
    "1144B-1144F 1145A-1145B 1145D 11660-1166C 116B9 1183B 11944-11946 119E2 11A3F-11A46 "
    "11A9A-11A9C 11A9E-11AA2 11C41-11C45 11C70-11C71 11EF7-11EF8 11FFF 12FF1-12FF2 "
    "16E97-16E9A 16FE2 1E95E-1E95F")

# Mn in unicode_categories 0.1.1 but Mc in 14.0.
MN_ONLY_IN_RUST = "1734"
# Mn in 14.0 that unicode_categories 0.1.1 does not know.
MN_NOT_IN_RUST = (
    "07FD 0898-089F 08CA-08E1 09FE 0AFA-0AFF 0B55 0C04 0C3C 0D00 0D3B-0D3C 0D81 0EBA 180F "
    "1885-1886 1ABF-1ACE 1DF6-1DFB A82C A8C5 A8FF A9BD 10D24-10D27 10EAB-10EAC 10F46-10F50 "
    "10F82-10F85 11070 11073-11074 110C2 111C9 111CF 1123E 1133B 11438-1143F 11442-11444 11446 "
    "1145E 1182F-11837 11839-1183A 1193B-1193C 1193E 11943 119D4-119D7 119DA-119DB 119E0 "
    "11A01-11A0A 11A33-11A38 11A3B-11A3E 11A47 11A51-11A56 11A59-11A5B 11A8A-11A96 11A98-11A99 "
    "11C30-11C36 11C38-11C3D 11C3F 11C92-11CA7 11CAA-11CB0 11CB2-11CB3 11CB5-11CB6 11D31-11D36 "
    "11D3A 11D3C-11D3D 11D3F-11D45 11D47 11D90-11D91 11D95 11D97 11EF3-11EF4 16F4F 16FE4 "
    "1CF00-1CF2D 1CF30-1CF46 1E000-1E006 1E008-1E018 1E01B-1E021 1E023-1E024 1E026-1E02A "
    "1E130-1E136 1E2AE 1E2EC-1E2EF 1E944-1E94A")

# Nonzero combining class in 14.0 but unknown to unicode-normalization-alignments (class 0 there).
CCC_NOT_IN_RUST = (
    "07FD 0898-089F 08CA-08D3 09FE 0C3C 0D3B-0D3C 0EBA 1715 1ABF-1ACE 1DF6-1DFA A82C 10D24-10D27 "
    "10EAB-10EAC 10F46-10F50 10F82-10F85 11070 1133B 1145E 11839-1183A 1193D-1193E 11943 119E0 "
    "11A34 11A47 11A99 11D42 11D44-11D45 11D97 16FF0-16FF1 1E130-1E136 1E2AE 1E2EC-1E2EF")

# Canonical decompositions in 14.0 unknown to unicode-normalization-alignments.
DECOMP_NOT_IN_RUST = "11938"

# Lowercase mappings of the Rust standard library for letters that unicodedata 14.0 does not have
# yet (Unicode 16.0 and 17.0 additions; tokenizers 0.23's wheel is built with a Unicode 17 std).
# With BERT's vocabulary they only ever turn one [UNK] into another, but they keep the normalized
# text exact. Read off tokenizers' own normalizer.
LOWER_ADDED_IN_RUST = {
    0x1C89: 0x1C8A, 0xA7CB: 0x0264, 0xA7CC: 0xA7CD, 0xA7CE: 0xA7CF, 0xA7D2: 0xA7D3,
    0xA7D4: 0xA7D5, 0xA7DA: 0xA7DB, 0xA7DC: 0x019B,
    **{c: c + 0x20 for c in range(0x10D50, 0x10D66)},  # Garay
    **{c: c + 0x1B for c in range(0x16EA0, 0x16EB9)},  # Beria Erfe
}

# ASCII punctuation counts as punctuation for BertPreTokenizer even where Unicode says symbol
# ($ + < = > ^ ` | ~).
ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

MAX_CP = 0x10FFFF


def parse_ranges(text):
    out = set()
    for item in text.split():
        lo, _, hi = item.partition("-")
        out.update(range(int(lo, 16), int(hi or lo, 16) + 1))
    return out


def code_points():
    # Rust chars are never surrogates.
    return (c for c in range(MAX_CP + 1) if not 0xD800 <= c <= 0xDFFF)


def category_set(pred):
    return {c for c in code_points() if pred(unicodedata.category(chr(c)))}


def build():
    """Returns the tables as the Rust library sees them (dict of name -> data)."""
    other = category_set(lambda cat: cat in ("Cc", "Cf", "Co")) - parse_ranges(OTHER_NOT_IN_RUST)
    # clean_text drops NUL, U+FFFD and "control" characters, except \t \n \r which it treats as
    # whitespace.
    drop = (other | {0x0000, 0xFFFD}) - {0x09, 0x0A, 0x0D}

    # White_Space is Zs, Zl, Zp plus the five C0 controls 0009-000D and U+0085; it has not changed
    # since Unicode 6.3, so 14.0 and the Rust standard library agree.
    whitespace = category_set(lambda cat: cat in ("Zs", "Zl", "Zp")) | set(range(0x09, 0x0E))
    whitespace.add(0x85)

    punct = category_set(lambda cat: cat.startswith("P"))
    punct = (punct - parse_ranges(PUNCT_NOT_IN_RUST)) | parse_ranges(PUNCT_ONLY_IN_RUST)
    punct |= {ord(ch) for ch in ASCII_PUNCT}

    mn = category_set(lambda cat: cat == "Mn")
    mn = (mn - parse_ranges(MN_NOT_IN_RUST)) | parse_ranges(MN_ONLY_IN_RUST)

    ccc_skip = parse_ranges(CCC_NOT_IN_RUST)
    ccc = {}
    for c in code_points():
        value = unicodedata.combining(chr(c))
        if value and c not in ccc_skip:
            ccc[c] = value

    # One level of canonical decomposition; the C++ side recurses. Hangul syllables are left to
    # the C++ side's arithmetic, as in the Rust crate.
    decomp_skip = parse_ranges(DECOMP_NOT_IN_RUST)
    decomp = {}
    for c in code_points():
        if 0xAC00 <= c <= 0xD7A3 or c in decomp_skip:
            continue
        d = unicodedata.decomposition(chr(c))
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            assert 1 <= len(parts) <= 2, hex(c)
            decomp[c] = parts

    # char::to_lowercase is per character (no final-sigma rule). str.lower() of one character is
    # the same full mapping (SpecialCasing's unconditional entries), since the final-sigma context
    # cannot hold for a lone character.
    lower = {}
    lower_multi = {}
    for c in code_points():
        low = chr(c).lower()
        if low == chr(c):
            continue
        if len(low) == 1:
            lower[c] = ord(low)
        else:
            lower_multi[c] = [ord(x) for x in low]
    for c, low in LOWER_ADDED_IN_RUST.items():
        assert c not in lower, hex(c)
        lower[c] = low

    return dict(drop=drop, whitespace=whitespace, punct=punct, mn=mn, ccc=ccc, decomp=decomp,
                lower=lower, lower_multi=lower_multi)


def to_ranges(cps):
    ranges = []
    for c in sorted(cps):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return ranges


def value_ranges(mapping):
    """[lo, hi, value] runs of consecutive code points with the same value."""
    runs = []
    for c in sorted(mapping):
        if runs and runs[-1][1] == c - 1 and runs[-1][2] == mapping[c]:
            runs[-1][1] = c
        else:
            runs.append([c, c, mapping[c]])
    return runs


def lower_runs(lower):
    """[lo, hi, stride, delta] runs: every stride-th code point from lo to hi maps to c + delta.

  Case pairs mostly alternate (upper, lower, upper, ...) or come in blocks, so stride 2 and 1
  cover nearly everything."""
    runs = []
    for c in sorted(lower):
        delta = lower[c] - c
        if runs:
            lo, hi, stride, run_delta = runs[-1]
            if run_delta == delta:
                if lo == hi and c - hi in (1, 2):
                    runs[-1] = [lo, c, c - hi, delta]
                    continue
                if lo != hi and c - hi == stride:
                    runs[-1][1] = c
                    continue
        runs.append([c, c, 1, delta])
    return runs


def hexcp(c):
    return "0x%X" % c


def emit_rows(out, items, width=100):
    """Appends items (each ending in a comma) as indented lines at most width columns wide."""
    line = ""
    for item in items:
        if line and len(line) + 1 + len(item) > width:
            out.append(line)
            line = ""
        line = line + " " + item if line else "    " + item
    if line:
        out.append(line)


def write_inc(tables, path):
    out = [
        "// generated by gen_unicode.py, do not edit",
        "//",
        "// Unicode data as Hugging Face tokenizers (Rust) sees it: general categories and NFD",
        "// from Unicode 9.0 (the crates unicode_categories and unicode-normalization-alignments),",
        "// whitespace and lowercase from the Rust standard library. All tables are sorted by",
        "// code point for binary search. Rerun: /usr/bin/python3 examples/minilm/gen_unicode.py",
        "",
        "struct code_range {",
        "  char32_t lo, hi;",
        "};",
        "struct class_range {",
        "  char32_t lo, hi;",
        "  std::uint8_t value;",
        "};",
        "// Every stride-th code point c in [lo, hi] lowercases to c + delta.",
        "struct case_range {",
        "  char32_t lo, hi;",
        "  std::uint8_t stride;",
        "  std::int32_t delta;",
        "};",
        "// One level of canonical decomposition; second is 0 for a singleton.",
        "struct decomposition {",
        "  char32_t cp, first, second;",
        "};",
        "struct multi_lowercase {",
        "  char32_t cp, chars[3];",
        "};",
        "",
    ]

    def range_table(name, comment, cps):
        out.append("// " + comment)
        out.append("constexpr code_range %s[] = {" % name)
        emit_rows(out, ["{%s,%s}," % (hexcp(a), hexcp(b)) for a, b in to_ranges(cps)])
        out.append("};")
        out.append("")

    range_table("kDropped", "Removed by clean_text: NUL, U+FFFD, Cc/Cf/Co except \\t \\n \\r.",
                tables["drop"])
    range_table("kWhitespace", "White_Space (char::is_whitespace).", tables["whitespace"])
    range_table("kPunctuation", "ASCII punctuation and general category P*.", tables["punct"])
    range_table("kNonspacingMark", "General category Mn (removed after NFD).", tables["mn"])

    out.append("// Nonzero canonical combining classes.")
    out.append("constexpr class_range kCombiningClass[] = {")
    emit_rows(out, ["{%s,%s,%d}," % (hexcp(a), hexcp(b), v)
                    for a, b, v in value_ranges(tables["ccc"])])
    out.append("};")
    out.append("")

    out.append("// Canonical decompositions, except Hangul syllables (computed).")
    out.append("constexpr decomposition kDecomposition[] = {")
    decomp = tables["decomp"]
    emit_rows(out, ["{%s,%s,%s}," % (hexcp(c), hexcp(d[0]), hexcp(d[1]) if len(d) > 1 else "0")
                    for c, d in sorted(decomp.items())])
    out.append("};")
    out.append("")

    out.append("// Single-character lowercase mappings.")
    out.append("constexpr case_range kLowercase[] = {")
    emit_rows(out, ["{%s,%s,%d,%d}," % (hexcp(a), hexcp(b), s, d)
                    for a, b, s, d in lower_runs(tables["lower"])])
    out.append("};")
    out.append("")

    out.append("// Lowercase mappings to several characters (zero-padded).")
    out.append("constexpr multi_lowercase kMultiLowercase[] = {")
    for c, chars in sorted(tables["lower_multi"].items()):
        assert len(chars) <= 3
        padded = chars + [0] * (3 - len(chars))
        out.append("    {%s, {%s}}," % (hexcp(c), ", ".join(hexcp(x) for x in padded)))
    out.append("};")

    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(out) + "\n")


def main():
    if unicodedata.unidata_version != "14.0.0":
        sys.exit("gen_unicode.py: needs unicodedata 14.0.0 (the correction lists are relative "
                 "to it), this Python has %s" % unicodedata.unidata_version)
    here = os.path.dirname(os.path.abspath(__file__))
    write_inc(build(), os.path.join(here, "unicode_tables.inc"))


if __name__ == "__main__":
    main()
