/* checkpoint.h: model directories and training checkpoints as wdl-train
 * writes them. A checkpoint OUT.ckpt/ holds the strong model with its
 * AdamW moments (optimizer.safetensors, optimizer_v.safetensors),
 * trainer.json (step, total steps, seed, data fingerprint, NEFTune alpha
 * when on) and, for WD-JT
 * with a trained weak model, the same under weak/. */
#ifndef WDL_CHECKPOINT_H
#define WDL_CHECKPOINT_H
#include <stdint.h>
#include "dataset.h"
#include "model.h"
#include "template.h"
#include "tokenizer.h"

/* A model directory opened for use: the model, its tokenizer (checked to
 * fit the vocabulary) and its prompt template. Dies naming dir when any
 * part is missing or bad. */
wdl_model *model_dir_open(const char *dir, wdl_tokenizer **tok, wdl_template *tpl);
/* The same with model_load_forward (wdl-score) and model_load_decode (wdl-eval;
 * copy as there). */
wdl_model *model_dir_open_forward(const char *dir, wdl_tokenizer **tok, wdl_template *tpl);
wdl_model *model_dir_open_decode(const char *dir, wdl_tokenizer **tok, wdl_template *tpl, int copy);

/* A model directory: config, weights (BF16 when bf16) and the tokenizer of
 * the model directory src_dir. */
void ckpt_write_model(const wdl_model *m, const char *src_dir, const char *dir, int bf16);
/* What a checkpoint must match to be resumed: the run's number of steps,
 * seed, sequences per step (global_batch; how ranks split it may differ)
 * and NEFTune alpha (0: off). */
typedef struct { int64_t total, seed, global_batch; double neftune; } ckpt_run;
/* Write ckpt atomically at step of run->total; w (NULL: none) is the weak
 * side. s_src/w_src are the directories the models came from (tokenizers). */
void ckpt_save(const char *ckpt, const wdl_model *s, const char *s_src, const wdl_model *w, const char *w_src,
               int64_t step, const ckpt_run *run, const dataset *d);
/* Load ckpt into s (and w unless NULL) and return its step. Dies when it
 * was made on other data or for another run (ckpt_run). */
int64_t ckpt_load(const char *ckpt, wdl_model *s, wdl_model *w, const ckpt_run *run, const dataset *d);
#endif
