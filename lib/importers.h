/* importers.h: external benchmark and chat sets -> task records.
 * Inputs are a JSON array of objects or JSON Lines (plain, .zst or an
 * ARCHIVE:member). Output records follow PIPELINE.md:
 * {"idx", "task", "prompt", "completion"?, "answer", ...source fields the
 * checker needs}; chat records keep "messages" and gain "idx"/"task". */
#ifndef WDL_IMPORTERS_H
#define WDL_IMPORTERS_H
#include <jansson.h>
#include <stdint.h>
#include "records.h"

enum { IMP_MAWPS, IMP_SVAMP, IMP_GSM8K, IMP_AQUA, IMP_AIME, IMP_AMC, IMP_CHAT };

int import_format(const char *name);        /* IMP_* or -1 */
const char *import_format_name(int fmt);

/* Convert one source object; pos is its 0-based position in the input.
 * task overrides the task name (NULL = the format's name). Returns a new
 * record, or NULL (with *why set) when the object lacks what the format
 * needs. *layout (may be NULL) names the source layout that was read
 * (e.g. "Body+Question/Answer" for SVAMP), NULL for chat. */
json_t *import_convert(int fmt, const char *task, json_t *src, int64_t pos, const char **why,
                       const char **layout);

/* Convert every object of every file, in order, to w, and (unless quiet)
 * say on stderr which layouts were read; records left without a completion
 * are warned of either way. Dies with "<file>:<line>: ..." on malformed
 * input or a duplicate idx. */
void import_files(int fmt, const char *task, const char *const *files, int n, rec_writer *w, int quiet);
#endif
