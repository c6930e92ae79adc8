// Hugging Face `tokenizer.json` byte-level BPE (GPT-2, LLaMA-3, Qwen2 style), id for id equal to
// the `tokenizers` package encoding with add_special_tokens=False and encode_special_tokens=True:
// special tokens are never produced from text, even text that spells one. What is supported:
//   model:          BPE, vocab + merges ("a b" strings or [a, b] pairs), ignore_merges; every one of
//                   the 256 byte symbols in the vocabulary; no dropout, no subword prefix/suffix
//   normalizer:     none, NFC (ICU), or a Sequence of those
//   pre_tokenizer:  ByteLevel (its GPT-2 regex or use_regex=false, add_prefix_space=false), after
//                   any number of Split steps (a Regex or String pattern, behavior Isolated), as a
//                   Sequence — the regexes run in PCRE2 with UTF, UCP and JIT
//   decoder:        ByteLevel
//   added_tokens:   special ones are control tokens (EOS among them, decoded to nothing); the
//                   others are matched in the text first (leftmost longest), as `tokenizers` does
// post_processor, truncation and padding are ignored: cairn adds no BOS and ends each document with
// EOS. Anything else is refused naming its JSON path. Text that is not valid UTF-8 still encodes:
// each invalid byte becomes its byte token, so decode(encode(x)) == x for any bytes x (for NFC
// tokenizers, any NFC x).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "data/tokenizer.h"

namespace cairn {

inline constexpr const char* kHfTokenizerKind = "hf_bpe";

// `spec` is "PATH" or "PATH#eos=TOKEN" (PATH a tokenizer.json, or a Hugging Face model directory
// holding one). The EOS token, which ends every document, is TOKEN when given; else, for a model
// directory, the eos_token_id of its generation_config.json (the first of a list); else the
// `eos_token` of a tokenizer_config.json in the same directory; else the first of <|endoftext|>,
// <|end_of_text|>, </s>, <eos> that the file has. It must be a special added token, so plain text
// never produces it.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& spec);

// From the bytes of a tokenizer.json (Tokenizer::serialized()) and the EOS id recorded beside them.
// `origin` names the source in error messages.
std::unique_ptr<Tokenizer> load_hf_tokenizer_serialized(const std::string& json, uint32_t eos_id,
                                                        const std::string& origin);

}  // namespace cairn
