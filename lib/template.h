/* template.h: prompt templates that turn (system, prompt, completion) into
 * token ids plus the length of the prompt part excluded from the loss.
 *
 *   chatml (Qwen3): [<|im_start|>system\n{system}<|im_end|>\n]
 *                   <|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n
 *                   {completion}<|im_end|>
 *   plain (byte models): [{system}\n\n]Question: {prompt}\nAnswer: {completion}<|endoftext|>
 *
 * The ids equal what Hugging Face gives for the whole rendered string (the
 * markers are added tokens; the text between them is encoded as one
 * piece), except that text coming from the record never turns into special
 * tokens: it is encoded with allow_special = 0. */
#ifndef WDL_TEMPLATE_H
#define WDL_TEMPLATE_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "tokenizer.h"

typedef enum { TPL_PLAIN = 0, TPL_CHATML = 1 } wdl_template;

/* "plain" or "chatml"; dies on anything else. */
wdl_template tpl_from_name(const char *name);
const char *tpl_name(wdl_template t);
/* Sets ids (its old content is dropped) to prompt tokens, then completion
 * tokens, then the end token; *n_prompt = number of leading tokens excluded
 * from the loss (every token that holds no completion byte; the loss covers
 * the completion and the end token). completion NULL => the generation
 * prompt only (it ends where the model starts writing) and *n_prompt =
 * ids->n. system may be NULL. */
void tpl_encode(const wdl_tokenizer *t, wdl_template tpl, const char *system, const char *prompt,
                const char *completion, ivec *ids, size_t *n_prompt);
/* The token that ends a completion (generation stops there): <|im_end|>
 * for chatml, <|endoftext|> for plain. Dies if the tokenizer lacks it. */
int32_t tpl_end_id(const wdl_tokenizer *t, wdl_template tpl);
#endif
