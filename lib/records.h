/* records.h: JSON Lines record streams (plain, zstd, archive members).
 * Every tool reads and writes records through here, so compression,
 * archive members, error positions and byte-deterministic output behave
 * the same everywhere. Records are jansson objects; key order is kept, so
 * fields a tool does not own pass through unchanged. */
#ifndef WDL_RECORDS_H
#define WDL_RECORDS_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rec_reader rec_reader;
/* "-" or NULL = stdin; *.zst (or any input starting with the zstd magic) is
 * decompressed; "ARCHIVE:member/path" reads one member of a .tar, .tar.gz,
 * .tgz, .tar.zst, .tar.xz, .tar.bz2 or .zip (a member ending in .zst is
 * decompressed too). Dies "<path>: cannot open: <why>". */
rec_reader *rec_open(const char *path);
/* Next record (new reference, a JSON object) or NULL at end of input.
 * Blank lines are skipped; a malformed line or a non-object dies with
 * "<name>:<line>: <message>". Lines may be of any length. */
json_t *rec_next(rec_reader *r);
const char *rec_name(const rec_reader *r);   /* "<stdin>" for stdin */
int64_t rec_line(const rec_reader *r);       /* line of the last record */
void rec_close(rec_reader *r);
/* Variants that report instead of dying (for lenient tools and fuzzing):
 * rec_try_open returns NULL, rec_try_next returns -1, with the message in
 * err; rec_try_next returns 1 for a record, 0 at the end. A reader that
 * failed stays failed. */
rec_reader *rec_try_open(const char *path, char *err, size_t errlen);
int rec_try_next(rec_reader *r, json_t **out, char *err, size_t errlen);
/* The whole decoded content of an input (same path rules as rec_open),
 * NUL-terminated, malloc'd; for inputs that are one JSON document. */
char *rec_slurp(const char *path, size_t *len);

/* Several inputs read one after the other (no paths = stdin). */
typedef struct rec_multi rec_multi;
rec_multi *rec_multi_open(const char *const *paths, int n);
json_t *rec_multi_next(rec_multi *m);
const char *rec_multi_name(const rec_multi *m); /* current input */
int64_t rec_multi_line(const rec_multi *m);
void rec_multi_close(rec_multi *m);

typedef struct rec_writer rec_writer;
/* "-" or NULL = stdout; *.zst = zstd level 3 (deterministic). A file is
 * written under a registered temporary name and renamed into place by
 * rec_commit, so a failing program leaves no partial output. */
rec_writer *rec_create(const char *path);
/* One compact line; keys in stored order; reals in the shortest form that
 * reads back to the same double (integral reals keep a ".0"). */
void rec_write(rec_writer *w, json_t *rec);
/* Lines that rec_write or rec_dumps made (another process's records),
 * written as they are: text[0..n) holds whole lines, each ending in '\n'. */
void rec_write_text(rec_writer *w, const char *text, size_t n);
/* Flush, end the zstd frame, fsync, rename into place, free. */
void rec_commit(rec_writer *w);

/* The serializer rec_write uses, for other tools (hashing, keys): the
 * compact text of any JSON value, NUL-terminated, malloc'd. */
char *rec_dumps(const json_t *v, size_t *len);

/* Prompt and completion of a task record {"prompt","completion"[,"system"]}
 * or a chat record {"messages":[{"role","content"}...]}: prompt = the last
 * user content before the final assistant turn, completion = that final
 * assistant content (NULL when the chat does not end with one), system =
 * the first system content or NULL. Returns 0 when there is no prompt.
 * The strings borrow from rec. Any output pointer may be NULL. */
int rec_prompt_completion(json_t *rec, const char **system, const char **prompt,
                          const char **completion);

/* Small field helpers: a string field or NULL; an integer field or def. */
const char *rec_str(const json_t *rec, const char *key);
int64_t rec_int(const json_t *rec, const char *key, int64_t def);
#endif
