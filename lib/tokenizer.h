/* tokenizer.h: Hugging Face byte-level BPE tokenizers (tokenizer.json) and
 * the built-in byte tokenizer, behind one API.
 *
 * A tokenizer.json is followed as Hugging Face `tokenizers` does: its
 * normalizer (NFC/NFD/NFKC/NFKD or none), its pre-tokenizer (Split regexes,
 * compiled with PCRE2 in UTF+UCP mode, then ByteLevel), BPE merges by rank
 * (ignore_merges honoured) and its added tokens (matched before
 * normalization, leftmost-longest, with single_word/lstrip/rstrip/normalized
 * flags). Other model types or pre-tokenizers are refused with a message.
 *
 * Text that is not valid UTF-8 is not an error: its invalid bytes are kept
 * as they are (never normalized) and become byte tokens, so
 * decode(encode(x)) == x with each valid UTF-8 stretch normalized.
 *
 * The byte tokenizer: ids 0..255 are the bytes, 256 <|endoftext|>,
 * 257 <|im_start|>, 258 <|im_end|>, 259 <think>, 260 </think>; vocabulary
 * size 272 (261..271 reserved: decoding them dies).
 *
 * A loaded tokenizer is read-only and may be used from several threads. */
#ifndef WDL_TOKENIZER_H
#define WDL_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

typedef struct wdl_tokenizer wdl_tokenizer;

/* A tokenizer.json (HF byte-level BPE), a model directory (its
 * tokenizer.json if present, else its config.json "wdl_tokenizer": "byte"),
 * or the literal "byte". Dies on malformed files with the path and what is
 * wrong. */
wdl_tokenizer *tok_load(const char *path);
/* The byte tokenizer. */
wdl_tokenizer *tok_byte(void);
void tok_free(wdl_tokenizer *t);
/* Number of ids (max id + 1). */
int64_t tok_vocab_size(const wdl_tokenizer *t);
/* Encode UTF-8 text, appending ids to out. Special/added tokens in the text
 * are matched (as HF does with added tokens) when allow_special != 0;
 * otherwise they are encoded as plain text. No BOS/EOS added. */
void tok_encode(const wdl_tokenizer *t, const char *text, size_t len, int allow_special, ivec *out);
/* Decode ids to bytes (malloc'd, NUL-terminated, *len set when len is not
 * NULL). Unknown ids die. */
char *tok_decode(const wdl_tokenizer *t, const int32_t *ids, size_t n, size_t *len);
/* Id of "<|im_end|>" etc. (added tokens first, then the vocabulary); -1 if
 * absent. */
int32_t tok_special(const wdl_tokenizer *t, const char *name);
int tok_is_byte(const wdl_tokenizer *t);

/* Extras beyond the core API. */

/* The bytes one id decodes to (borrowed, not NUL-terminated): returns 1, or
 * 0 when the id is unknown. For incremental decoding and stop checks. */
int tok_id_bytes(const wdl_tokenizer *t, int32_t id, const char **bytes, size_t *len);
/* Parse tokenizer.json text without dying: returns NULL and writes
 * "<name>[:line]: what is wrong" to err (errlen bytes) on bad input. */
wdl_tokenizer *tok_load_json(const char *json, size_t len, const char *name, char *err, size_t errlen);
#endif
