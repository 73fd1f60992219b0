/*
 * A tiny streaming JSON writer (see json.h).
 */
#include <inttypes.h>
#include <math.h>

#include "json.h"

void json_init(json_writer *w, FILE *f, int pretty)
{
	w->f = f;
	w->pretty = pretty;
	w->depth = 0;
	w->after_key = 0;
	w->err = 0;
}

static void newline_indent(json_writer *w)
{
	if (!w->pretty)
		return;
	fputc('\n', w->f);
	for (int i = 0; i < w->depth; i++)
		fputs("  ", w->f);
}

/* Writes what must precede a value or key at the current position. */
static void before_item(json_writer *w)
{
	if (w->after_key) {
		w->after_key = 0;
		return;
	}
	if (w->depth == 0)
		return;
	if (!w->first[w->depth - 1])
		fputc(',', w->f);
	w->first[w->depth - 1] = 0;
	newline_indent(w);
}

static void put_escaped(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static void begin(json_writer *w, int obj)
{
	before_item(w);
	fputc(obj ? '{' : '[', w->f);
	if (w->depth >= JSON_MAX_DEPTH) {
		w->err = 1;
		return;
	}
	w->first[w->depth] = 1;
	w->is_obj[w->depth] = (unsigned char)obj;
	w->depth++;
}

static void end(json_writer *w, int obj)
{
	int empty;

	if (w->depth == 0 || w->is_obj[w->depth - 1] != obj || w->after_key) {
		w->err = 1;
		return;
	}
	empty = w->first[w->depth - 1];
	w->depth--;
	if (!empty)
		newline_indent(w);
	fputc(obj ? '}' : ']', w->f);
}

void json_begin_object(json_writer *w)
{
	begin(w, 1);
}

void json_end_object(json_writer *w)
{
	end(w, 1);
}

void json_begin_array(json_writer *w)
{
	begin(w, 0);
}

void json_end_array(json_writer *w)
{
	end(w, 0);
}

void json_key(json_writer *w, const char *key)
{
	if (w->depth == 0 || !w->is_obj[w->depth - 1] || w->after_key)
		w->err = 1;
	before_item(w);
	put_escaped(w->f, key ? key : "");
	fputs(w->pretty ? ": " : ":", w->f);
	w->after_key = 1;
}

void json_string(json_writer *w, const char *s)
{
	before_item(w);
	if (s)
		put_escaped(w->f, s);
	else
		fputs("null", w->f);
}

void json_number(json_writer *w, double v)
{
	before_item(w);
	if (isfinite(v))
		fprintf(w->f, "%.9g", v);
	else
		fputs("null", w->f);
}

void json_int(json_writer *w, int64_t v)
{
	before_item(w);
	fprintf(w->f, "%" PRId64, v);
}

void json_uint(json_writer *w, uint64_t v)
{
	before_item(w);
	fprintf(w->f, "%" PRIu64, v);
}

void json_bool(json_writer *w, int v)
{
	before_item(w);
	fputs(v ? "true" : "false", w->f);
}

void json_null(json_writer *w)
{
	before_item(w);
	fputs("null", w->f);
}

void json_kv_string(json_writer *w, const char *key, const char *s)
{
	json_key(w, key);
	json_string(w, s);
}

void json_kv_number(json_writer *w, const char *key, double v)
{
	json_key(w, key);
	json_number(w, v);
}

void json_kv_int(json_writer *w, const char *key, int64_t v)
{
	json_key(w, key);
	json_int(w, v);
}

void json_kv_uint(json_writer *w, const char *key, uint64_t v)
{
	json_key(w, key);
	json_uint(w, v);
}

void json_kv_bool(json_writer *w, const char *key, int v)
{
	json_key(w, key);
	json_bool(w, v);
}

int json_finish(json_writer *w)
{
	if (w->depth != 0 || w->after_key)
		w->err = 1;
	fputc('\n', w->f);
	if (fflush(w->f) != 0 || ferror(w->f))
		return -1;
	return w->err ? -1 : 0;
}
