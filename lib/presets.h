/* presets.h: model presets compiled in from the JSON files in data/presets. */
#ifndef WDL_PRESETS_H
#define WDL_PRESETS_H
extern const char *const wdl_preset_names[];  /* NULL-terminated */
extern const char *const wdl_preset_texts[];  /* config.json text, same order */
#endif
