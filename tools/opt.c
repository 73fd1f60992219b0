/*
 * The tool's option parser, its --help writer and the shared value
 * parsers. A hand-written loop rather than getopt_long: eval's EXPR may
 * start with '-' ("-F + G"), which getopt would read as short options, and
 * every message has to name the command.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "opt.h"

/* Entries of a table a parser keeps track of (given or not). */
#define OPT_MAX 128

/* "pspace: <cmd>: <what>" and the hint to --help; @return EXIT_USAGE. */
static int opt_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int opt_usage(const char *cmd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tool_usage_error(cmd, "%s%s%s", cmd ? cmd : "", cmd ? ": " : "", msg);
}

/* "--name" of an option, "NAME" of an argument. */
static const char *opt_label(const tool_opt *o, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%s", o->type == TOOL_OPT_ARG ? "" : "--", o->name);
	return buf;
}

/* ---- parsing ---------------------------------------------------------------------- */

static const tool_opt *find_long(const tool_opt *opts, const char *name, size_t len)
{
	for (const tool_opt *o = opts; o->type != TOOL_OPT_END; o++)
		if ((o->type == TOOL_OPT_SWITCH || o->type == TOOL_OPT_VALUE) &&
		    strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

static const tool_opt *find_short(const tool_opt *opts, char c)
{
	for (const tool_opt *o = opts; o->type != TOOL_OPT_END; o++)
		if ((o->type == TOOL_OPT_SWITCH || o->type == TOOL_OPT_VALUE) && o->alias == c)
			return o;
	return NULL;
}

static int set_value(const tool_cmd_doc *doc, const tool_opt *o, const char *text)
{
	if (o->type == TOOL_OPT_SWITCH) {
		*(int *)o->value = o->ival;
		return EXIT_OK;
	}
	if (!o->parse) {
		*(const char **)o->value = text;
		return EXIT_OK;
	}
	return o->parse(o, doc->name, text);
}

/* Option @p o at argv[*i], written as @p shown; @p inline_value: the text after '=' or NULL. */
static int take_option(const tool_cmd_doc *doc, const tool_opt *o, const char *shown,
                       const char *inline_value, int argc, char **argv, int *i)
{
	if (o->type == TOOL_OPT_SWITCH) {
		if (inline_value)
			return opt_usage(doc->name, "%s takes no value", shown);
		return set_value(doc, o, NULL);
	}
	if (inline_value)
		return set_value(doc, o, inline_value);
	if (*i + 1 >= argc)
		return opt_usage(doc->name, "%s needs a value", shown);
	return set_value(doc, o, argv[++*i]);
}

/* Checks the required arguments and options. */
static int check_required(const tool_cmd_doc *doc, const tool_opt *opts, const unsigned char *seen)
{
	char label[96];

	for (size_t k = 0; opts[k].type != TOOL_OPT_END; k++) {
		const tool_opt *o = &opts[k];

		if (!(o->flags & TOOL_OPT_REQUIRED) || seen[k])
			continue;
		if (o->type == TOOL_OPT_ARG)
			return opt_usage(doc->name, "missing %s", o->name);
		return opt_usage(doc->name, "%s is required", opt_label(o, label, sizeof(label)));
	}
	return EXIT_OK;
}

int tool_opt_parse(const tool_cmd_doc *doc, const tool_opt *opts, int argc, char **argv, int *next)
{
	unsigned char seen[OPT_MAX];
	size_t nopts = 0, arg = 0;
	int only_args = 0, rc;

	while (opts[nopts].type != TOOL_OPT_END)
		nopts++;
	if (nopts > OPT_MAX)
		return opt_usage(doc->name, "internal error: more than %d options", OPT_MAX);
	memset(seen, 0, sizeof(seen));
	if (next)
		*next = argc;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const tool_opt *o = NULL;

		if (!only_args && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
			tool_opt_help(stdout, doc, opts);
			return TOOL_HELP;
		}
		if (!only_args && strcmp(a, "--") == 0) {
			only_args = 1;
			continue;
		}
		if (!only_args && strncmp(a, "--", 2) == 0) {
			const char *eq = strchr(a + 2, '=');
			size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			char shown[96];

			o = find_long(opts, a + 2, len);
			snprintf(shown, sizeof(shown), "%.*s", (int)(len + 2), a);
			if (!o)
				return opt_usage(doc->name, "unknown option '%s'", shown);
			rc = take_option(doc, o, shown, eq ? eq + 1 : NULL, argc, argv, &i);
		} else if (!only_args && a[0] == '-' && !(doc->flags & TOOL_PARSE_DASH_ARGS)) {
			if (a[1] && !a[2])
				o = find_short(opts, a[1]);
			if (!o)
				return opt_usage(doc->name, "unknown option '%s'", a);
			rc = take_option(doc, o, a, NULL, argc, argv, &i);
		} else {
			while (arg < nopts && opts[arg].type != TOOL_OPT_ARG)
				arg++;
			if (arg == nopts)
				return opt_usage(doc->name, "unexpected argument '%s'", a);
			o = &opts[arg++];
			rc = set_value(doc, o, a);
			if (rc == EXIT_OK && (doc->flags & TOOL_PARSE_STOP)) {
				seen[o - opts] = 1;
				if (next)
					*next = i + 1;
				break;
			}
		}
		if (rc)
			return rc;
		seen[o - opts] = 1;
	}
	return check_required(doc, opts, seen);
}

/* ---- help ------------------------------------------------------------------------- */

/* "  -x, --name VALUE" into @p buf; @return its length. */
static size_t lead(const tool_opt *o, char *buf, size_t cap)
{
	char alias[8] = "";

	if (o->alias)
		snprintf(alias, sizeof(alias), "-%c, ", o->alias);
	return (size_t)snprintf(buf, cap, "  %s--%s%s%s", alias, o->name, o->value_name ? " " : "",
	                        o->value_name ? o->value_name : "");
}

/* Lines of @p text, the first after @p used columns, the others at @p col. */
static void put_lines(FILE *f, const char *text, size_t used, size_t col)
{
	const char *p = text;

	for (;;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		fprintf(f, "%*s%.*s\n", (int)(col > used ? col - used : 2), "", (int)len, p);
		if (!nl || !nl[1])
			return;
		p = nl + 1;
		used = 0;
	}
}

static void put_usage(FILE *f, const tool_cmd_doc *doc, const tool_opt *opts)
{
	int optional = 0;

	fprintf(f, "usage: pspace%s%s", doc->name ? " " : "", doc->name ? doc->name : "");
	if (doc->flags & TOOL_PARSE_STOP)
		fputs(" [options]", f);
	for (const tool_opt *o = opts; o->type != TOOL_OPT_END; o++)
		if (o->type == TOOL_OPT_ARG)
			fprintf(f, (o->flags & TOOL_OPT_REQUIRED) ? " %s" : " [%s]", o->name);
	for (const tool_opt *o = opts; o->type != TOOL_OPT_END; o++) {
		if (o->type != TOOL_OPT_SWITCH && o->type != TOOL_OPT_VALUE)
			continue;
		if (o->flags & TOOL_OPT_REQUIRED)
			fprintf(f, " --%s %s", o->name, o->value_name);
		else
			optional = 1;
	}
	if (optional && !(doc->flags & TOOL_PARSE_STOP))
		fputs(" [options]", f);
	fputc('\n', f);
}

void tool_opt_help(FILE *f, const tool_cmd_doc *doc, const tool_opt *opts)
{
	static const tool_opt help = {
	    .type = TOOL_OPT_SWITCH, .name = "help", .alias = 'h', .help = "this help"};
	char buf[128];
	size_t col = 0, n0;
	int heading = 0;

	for (const tool_opt *o = opts; o->type != TOOL_OPT_END; o++) {
		size_t n;

		if (o->type != TOOL_OPT_SWITCH && o->type != TOOL_OPT_VALUE)
			continue;
		n = lead(o, buf, sizeof(buf));
		col = n > col ? n : col;
	}
	n0 = lead(&help, buf, sizeof(buf));
	col = n0 > col ? n0 : col;
	col = col + 2 > 24 ? 24 : col + 2;
	put_usage(f, doc, opts);
	if (doc->about)
		fprintf(f, "\n%s", doc->about);
	for (const tool_opt *o = opts; o->type != TOOL_OPT_END; o++) {
		if (o->type == TOOL_OPT_GROUP) {
			fprintf(f, "\n%s\n", o->help);
			heading = 1;
		} else if (o->type == TOOL_OPT_SWITCH || o->type == TOOL_OPT_VALUE) {
			if (!heading)
				fputs("\nOptions:\n", f);
			heading = 1;
			lead(o, buf, sizeof(buf));
			fputs(buf, f);
			put_lines(f, o->help ? o->help : "", strlen(buf), col);
		}
	}
	if (!heading)
		fputs("\nOptions:\n", f);
	lead(&help, buf, sizeof(buf));
	fputs(buf, f);
	put_lines(f, help.help, strlen(buf), col);
	if (doc->notes)
		fprintf(f, "\n%s", doc->notes);
}

/* ---- value parsers ---------------------------------------------------------------- */

/* "needs an integer >= MIN" or "... in [MIN, MAX]" */
static int bad_integer(const tool_opt *o, const char *cmd, const char *s, double top)
{
	char label[96];

	opt_label(o, label, sizeof(label));
	if (o->max >= top)
		return opt_usage(cmd, "%s needs an integer >= %.0f, not '%s'", label, o->min, s);
	return opt_usage(cmd, "%s needs an integer in [%.0f, %.0f], not '%s'", label, o->min,
	                 o->max, s);
}

/* An unsigned decimal integer within the option's bounds and @p top. */
static int parse_unsigned(const tool_opt *o, const char *cmd, const char *s, double top,
                          uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || s[0] == '-' || (double)v < o->min ||
	    (double)v > o->max || (double)v > top)
		return bad_integer(o, cmd, s, top);
	*out = v;
	return EXIT_OK;
}

int tool_opt_u64(const tool_opt *o, const char *cmd, const char *s)
{
	uint64_t v = 0;
	int rc = parse_unsigned(o, cmd, s, (double)UINT64_MAX, &v);

	if (rc == EXIT_OK)
		*(uint64_t *)o->value = v;
	return rc;
}

int tool_opt_u32(const tool_opt *o, const char *cmd, const char *s)
{
	uint64_t v = 0;
	int rc = parse_unsigned(o, cmd, s, (double)UINT32_MAX, &v);

	if (rc == EXIT_OK)
		*(uint32_t *)o->value = (uint32_t)v;
	return rc;
}

int tool_opt_int(const tool_opt *o, const char *cmd, const char *s)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || (double)v < o->min || (double)v > o->max ||
	    v < INT_MIN || v > INT_MAX)
		return bad_integer(o, cmd, s, (double)UINT64_MAX);
	*(int *)o->value = (int)v;
	return EXIT_OK;
}

int tool_opt_double(const tool_opt *o, const char *cmd, const char *s)
{
	char label[96];
	char *end;
	double v;

	opt_label(o, label, sizeof(label));
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !isfinite(v))
		return opt_usage(cmd, "%s needs a number, not '%s'", label, s);
	if ((o->flags & TOOL_OPT_ABOVE) ? !(v > o->min) : !(v >= o->min))
		return opt_usage(cmd, "%s must be %s %g", label,
		                 (o->flags & TOOL_OPT_ABOVE) ? ">" : ">=", o->min);
	*(double *)o->value = v;
	return EXIT_OK;
}

int tool_opt_size(const tool_opt *o, const char *cmd, const char *s)
{
	char label[96];
	uint64_t v;

	if (tool_parse_size(s, &v) != 0 || v == 0 || v > SIZE_MAX)
		return opt_usage(cmd, "%s needs a size like 512M or 4G, not '%s'",
		                 opt_label(o, label, sizeof(label)), s);
	*(size_t *)o->value = (size_t)v;
	return EXIT_OK;
}

int tool_opt_count(const tool_opt *o, const char *cmd, const char *s)
{
	char label[96];
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end != s && errno == 0 && v >= 1) {
		if (*end == 'k' || *end == 'K') {
			v *= 1e3;
			end++;
		} else if (*end == 'm' || *end == 'M') {
			v *= 1e6;
			end++;
		}
		if (*end == '\0' && v <= 1e12) {
			*(uint64_t *)o->value = (uint64_t)v;
			return EXIT_OK;
		}
	}
	return opt_usage(cmd, "%s needs a positive number like 5000 or 200k, not '%s'",
	                 opt_label(o, label, sizeof(label)), s);
}

int tool_opt_choice(const tool_opt *o, const char *cmd, const char *s)
{
	char label[96], names[256];
	size_t n = 0, k;

	for (k = 0; o->choices[k].name; k++)
		if (strcmp(o->choices[k].name, s) == 0) {
			*(int *)o->value = o->choices[k].value;
			return EXIT_OK;
		}
	names[0] = '\0';
	for (size_t j = 0; j < k && n < sizeof(names); j++)
		n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s",
		                      j == 0       ? ""
		                      : j + 1 == k ? " or "
		                                   : ", ",
		                      o->choices[j].name);
	return opt_usage(cmd, "%s is %s, not '%s'", opt_label(o, label, sizeof(label)), names, s);
}

int tool_opt_variant(const tool_opt *o, const char *cmd, const char *s)
{
	tool_variant *v = o->value;
	char label[96];
	char *end;
	unsigned long long t;

	v->name = s;
	v->mc_samples = 0;
	if (strcmp(s, "classif_logits") == 0) {
		v->variant = PSPACE_VARIANT_CLASSIF_LOGITS;
		return EXIT_OK;
	}
	if (strcmp(s, "regression") == 0) {
		v->variant = PSPACE_VARIANT_REGRESSION;
		return EXIT_OK;
	}
	if (strcmp(s, "empirical") == 0) {
		v->variant = PSPACE_VARIANT_EMPIRICAL;
		return EXIT_OK;
	}
	if (strncmp(s, "mc:", 3) == 0 && s[3] != '-') {
		errno = 0;
		t = strtoull(s + 3, &end, 10);
		if (end != s + 3 && *end == '\0' && errno == 0 && t >= 1 && t <= UINT32_MAX) {
			v->variant = PSPACE_VARIANT_MC;
			v->mc_samples = (uint32_t)t;
			return EXIT_OK;
		}
	}
	return opt_usage(cmd,
	                 "%s is classif_logits, mc:T (T >= 1), regression or empirical, not '%s'",
	                 opt_label(o, label, sizeof(label)), s);
}

const tool_choice tool_precisions[] = {{"f32", PSPACE_F32},
                                       {"f64", PSPACE_F64},
                                       {"bf16", PSPACE_BF16},
                                       {"f16", PSPACE_F16},
                                       {NULL, 0}};
