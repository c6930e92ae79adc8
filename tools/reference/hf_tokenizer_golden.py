#!/usr/bin/env python3
"""Golden files for cairn's Hugging Face tokenizer.json reader (data/hf_tokenizer.h), made with the
`tokenizers` package (pip install tokenizers; 0.23.3 was used). Nothing is downloaded: two small
byte-level BPE tokenizers are TRAINED here on Debian's fortune files (packages fortunes and
fortunes-de, English and German) plus the multilingual lines below:

  gpt2_style   ByteLevel pre-tokenizer with its GPT-2 regex, no normalizer, special <|endoftext|>,
               a non-special added token <tool>
  llama3_style NFC normalizer, Split on the LLaMA-3 regex then ByteLevel(use_regex=False),
               ignore_merges, special <|begin_of_text|> <|end_of_text|> <|eot_id|> and reserved
               tokens, a post_processor adding <|begin_of_text|> (as LLaMA-3's), non-special added
               tokens "née" (matched after NFC) and <raw> (before)

Usage:
  hf_tokenizer_golden.py generate [--out tests/golden]   writes the files below
  hf_tokenizer_golden.py encode TOKENIZER.json TEXT_FILE prints {"ids": ..., "default_ids": ...}:
      ids as cairn encodes (add_special_tokens=False, encode_special_tokens=True) and the ids of a
      plain tokenizer.encode(text) (post_processor applied, special tokens matched in the text)

Files written (tests/golden/hf_*):
  hf_gpt2_style.json, hf_llama3_style.json   the tokenizers
  hf_tokenizer_text.txt                       the multilingual test text
  hf_tokenizer_expected.json                  {"lines": the test text's lines (it is their join with
                                              newlines), "ids": {name: {"ids": ids of the whole text,
                                              "line_ids": ids of each line alone, "decoded": the text,
                                              NFC-normalized for llama3_style}}}
"""
import argparse
import glob
import json
import os
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Learned by both tokenizers beside the fortunes, so that the test text meets multi-byte merges.
TRAIN_LINES = [
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Maße, Straße, Äpfel, Öl, Übung.",
    "Le cœur a ses raisons que la raison ne connaît point. L'été, déjà, où, naïve, Noël, français.",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Москва, привет, спасибо, хорошо.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο. Καλημέρα, ευχαριστώ, Αθήνα.",
    "敏捷的棕色狐狸跳过了懒狗。我们今天学习中文，明天去北京。天气很好，大家都很高兴。",
    "いろはにほへと ちりぬるを。東京は日本の首都です。今日はいい天気ですね。ありがとうございます。",
    "다람쥐 헌 쳇바퀴에 타고파. 안녕하세요, 감사합니다. 서울은 한국의 수도입니다.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول. مرحبا، شكرا، القاهرة.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है। नमस्ते, धन्यवाद, दिल्ली।",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ กรุงเทพ สวัสดี ขอบคุณ",
    "Tiếng Việt có dấu: Hà Nội, cảm ơn, xin chào, người Việt Nam.",
    "Emoji: 😀 😂 👍 👍🏽 ❤️ 🎉 🚀 👨‍👩‍👧 🇩🇪 🇯🇵 ✨",
    "Numbers: 0 1 12 123 1234 12345 3.14159 2.71828 1,000,000 2024-05-01 10:30 v1.2.3 #42 $9.99",
    "Code: for (int i = 0; i < n; ++i) { x[i] = y[i] * 2; } // done\n\tif x == None: return []",
    "I'm sure you'll see they've said it's what we'd do. DON'T SHOUT, IT'S LOUD, I'LL GO.",
]

# The golden test text: every line is also encoded on its own.
TEST_LINES = [
    "Hello world! Don't panic; it's only a test. I'm here, you're there, we'll see, they've gone, she'd know.",
    "SHOUTING: DON'T, IT'S, WE'LL, THEY'VE. Mixed: It'S, WE'Ll, don’t (curly apostrophe).",
    "Ünïcödé: Größe Straße. Café déjà vu: cafe\u0301 de\u0301ja\u0300 (combining marks), ne\u0301e, née, Å vs A\u030a.",
    "Digits: 7 42 123 4567 89012 1234567890123456789 3.14159 -17 +0.5e-10 1,234,567 2024-05-01T10:30:00Z",
    "CJK: 敏捷的棕色狐狸跳过了懒狗。東京は日本の首都です。다람쥐 헌 쳇바퀴에 타고파.",
    "Other scripts: Быстрая лиса. Η γρήγορη αλεπού. الثعلب البني. तेज़ भूरी लोमड़ी। สวัสดี. Hà Nội.",
    "Emoji: 😀👍🏽 ❤️ 👨‍👩‍👧‍👦 🇩🇪🇫🇷 🏳️‍🌈 ✨🚀 (ZWJ sequences, skin tones, flags).",
    "Whitespace:  two  spaces,   three,\ttab,\t\ttwo tabs, trailing   ",
    "   leading spaces, nbsp:\u00a0here, ideographic:\u3000here, thin:\u2009here, zwsp:\u200bhere, nel:\u0085here.",
    "ogham:\u1680here, line separator:\u2028here, mongolian vowel separator (not white space):\u180e'tis \u180e x.",
    "",
    "",
    "Windows line\r",
    "Special strings stay text: <|endoftext|> <|end_of_text|> <|begin_of_text|> <|eot_id|>.",
    "Added tokens: <tool>call</tool> <raw> and x<tool>y<raw>z.",
    "Code:\n    def f(x):\n        return x ** 2  # square\n\n\n",
    "Symbols: !!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ||| ~~~ ``` '''  \"\"\" <<< >>> [[[ ]]] {{{ }}}",
    "Controls: \x01\x02\x1b[0m\x7f and the end.",
]
TEST_TEXT = "\n".join(TEST_LINES)


def training_texts():
    files = []
    for d in ("/usr/share/games/fortunes", "/usr/share/games/fortunes/de"):
        for p in sorted(glob.glob(os.path.join(d, "*"))):
            if os.path.isfile(p) and not os.path.islink(p) and not p.endswith((".dat", ".u8")):
                files.append(p)
    if not files:
        sys.exit("no fortune files found: install the Debian packages fortunes and fortunes-de")
    for p in files:
        with open(p, encoding="utf-8", errors="replace") as f:
            yield f.read()
    for _ in range(30):
        yield from TRAIN_LINES


def train(pre_tokenizer, normalizer, specials, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_texts(), trainer)
    return tok


def gpt2_style(vocab_size=1200):
    tok = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), None, ["<|endoftext|>"], vocab_size)
    tok.add_tokens([AddedToken("<tool>", normalized=True)])
    return tok


def llama3_style(vocab_size=1500):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] + [f"<|reserved_special_token_{i}|>" for i in range(4)]
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = train(pre, normalizers.NFC(), specials, vocab_size)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    tok.add_tokens([AddedToken("née", normalized=True), AddedToken("<raw>", normalized=False)])
    # The trainer builds a fresh model; LLaMA-3 sets ignore_merges, so set it in the JSON.
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(j))


def cairn_ids(tok, text):
    """Ids as cairn encodes: no post-processing, special tokens never matched in the text."""
    tok.encode_special_tokens = True
    return tok.encode(text, add_special_tokens=False).ids


def generate(out):
    expected = {"lines": TEST_LINES, "ids": {}}
    for name, tok in (("gpt2_style", gpt2_style()), ("llama3_style", llama3_style())):
        tok.save(os.path.join(out, f"hf_{name}.json"), pretty=False)
        ids = cairn_ids(tok, TEST_TEXT)
        # cairn decodes to the (normalized) text exactly. tokenizers' own decode differs only where a
        # non-special added token holds a non-ASCII character: its ByteLevel decoder maps the é of
        # "née" as if it stood for byte 0xE9 and gives "n\ufffde".
        decoded = unicodedata.normalize("NFC", TEST_TEXT) if tok.normalizer else TEST_TEXT
        quirk = decoded.replace("née", "n\ufffde") if tok.token_to_id("née") is not None else decoded
        assert tok.decode(ids, skip_special_tokens=True) == quirk, name
        expected["ids"][name] = {"ids": ids, "line_ids": [cairn_ids(tok, line) for line in TEST_LINES],
                                 "decoded": decoded}
        print(f"{name}: vocabulary {tok.get_vocab_size()}, {len(TEST_TEXT.encode())} bytes -> {len(ids)} tokens")
    with open(os.path.join(out, "hf_tokenizer_text.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(TEST_TEXT)
    with open(os.path.join(out, "hf_tokenizer_expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def encode(tokenizer_path, text_path):
    tok = Tokenizer.from_file(tokenizer_path)
    with open(text_path, encoding="utf-8", newline="") as f:
        text = f.read()
    default_ids = tok.encode(text).ids
    print(json.dumps({"ids": cairn_ids(tok, text), "default_ids": default_ids}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden"))
    e = sub.add_parser("encode")
    e.add_argument("tokenizer")
    e.add_argument("text")
    args = ap.parse_args()
    if args.cmd == "generate":
        generate(args.out)
    else:
        encode(args.tokenizer, args.text)


if __name__ == "__main__":
    main()
