/*
 * A tiny streaming JSON writer for the tool's --json output: values are
 * written as they come, commas and indentation handled by a small stack.
 *
 *	json_writer w;
 *	json_init(&w, stdout, 1);
 *	json_begin_object(&w);
 *	json_kv_string(&w, "name", "fisher");
 *	json_key(&w, "shape");
 *	json_begin_array(&w);
 *	json_int(&w, 3);
 *	json_end_array(&w);
 *	json_end_object(&w);
 *	json_finish(&w);	// final newline, @return 0 or -1 on a write error
 */
#ifndef PSPACE_TOOLS_JSON_H
#define PSPACE_TOOLS_JSON_H

#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 32

typedef struct json_writer {
	FILE *f;
	int pretty;                          /* newlines + 2-space indentation */
	int depth;                           /* open containers */
	int after_key;                       /* a key was written, its value is next */
	unsigned char first[JSON_MAX_DEPTH]; /* no element yet at this level */
	unsigned char is_obj[JSON_MAX_DEPTH];
	int err; /* misuse (depth overflow, unbalanced) */
} json_writer;

/** Starts a document on @p f; @p pretty: indent with newlines. */
void json_init(json_writer *w, FILE *f, int pretty);

void json_begin_object(json_writer *w);
void json_end_object(json_writer *w);
void json_begin_array(json_writer *w);
void json_end_array(json_writer *w);

/** An object member's key (escaped); the next call writes its value. */
void json_key(json_writer *w, const char *key);

/** A string value, escaped; NULL writes null. */
void json_string(json_writer *w, const char *s);
/** A number as %.9g; NaN and infinities are written as null. */
void json_number(json_writer *w, double v);
void json_int(json_writer *w, int64_t v);
void json_uint(json_writer *w, uint64_t v);
void json_bool(json_writer *w, int v);
void json_null(json_writer *w);

/* key + value in one call */
void json_kv_string(json_writer *w, const char *key, const char *s);
void json_kv_number(json_writer *w, const char *key, double v);
void json_kv_int(json_writer *w, const char *key, int64_t v);
void json_kv_uint(json_writer *w, const char *key, uint64_t v);
void json_kv_bool(json_writer *w, const char *key, int v);

/** Ends the document with a newline and flushes; @return 0, or -1 if it was
 * unbalanced or a write failed. */
int json_finish(json_writer *w);

#endif
