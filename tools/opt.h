/*
 * The tool's options: each command declares its options and arguments in
 * one table (libgit2's cli_opt_spec is the model), one parser reads argv
 * against it and --help is written from it. The value parsers shared by
 * the commands (integers with bounds, numbers, sizes, choices, variants)
 * live here, once.
 */
#ifndef PSPACE_TOOLS_OPT_H
#define PSPACE_TOOLS_OPT_H

#include <stdint.h>
#include <stdio.h>

#include "cmd.h"

/** What a table entry is. */
typedef enum tool_opt_type {
	TOOL_OPT_END = 0, /**< ends a table */
	TOOL_OPT_SWITCH,  /**< --name: *(int *)value = ival */
	TOOL_OPT_VALUE,   /**< --name VALUE or --name=VALUE: parse(VALUE) */
	TOOL_OPT_ARG,     /**< the next positional argument: parse(ARG) */
	TOOL_OPT_GROUP,   /**< a heading in --help (help is its text) */
} tool_opt_type;

/** Entry flags. */
enum {
	TOOL_OPT_REQUIRED = 1, /**< ARG or VALUE that must be given */
	TOOL_OPT_ABOVE = 2,    /**< tool_opt_double: min is excluded (x > min) */
};

/** Parse flags of a command. */
enum {
	/** A word starting with one '-' (but -h) is an argument: eval's EXPR "-F + G". */
	TOOL_PARSE_DASH_ARGS = 1,
	/** The first argument ends the options (the tool's COMMAND word). */
	TOOL_PARSE_STOP = 2,
};

/** tool_opt_parse() after printing --help. */
#define TOOL_HELP (-1)

typedef struct tool_opt tool_opt;

/**
 * Turns the text @p s given for @p o into its value (o->value). On a bad
 * value prints "pspace: <cmd>: ..." with the hint to --help.
 * @return EXIT_OK or EXIT_USAGE.
 */
typedef int (*tool_opt_fn)(const tool_opt *o, const char *cmd, const char *s);

/** One name of a tool_opt_choice() option and the int it stands for. */
typedef struct tool_choice {
	const char *name;
	int value;
} tool_choice;

/** One option or argument of a command. */
struct tool_opt {
	tool_opt_type type;
	const char *name;           /**< long name without "--"; ARG: "STORE" */
	char alias;                 /**< short name (-x), 0 for none */
	void *value;                /**< where the result goes */
	tool_opt_fn parse;          /**< VALUE, ARG: NULL stores the text (const char **) */
	const char *value_name;     /**< VALUE: "N", "SIZE", ... */
	const char *help;           /**< lines separated by '\n' */
	unsigned flags;             /**< TOOL_OPT_* */
	double min, max;            /**< numeric parsers: bounds */
	int ival;                   /**< SWITCH: the value set; tool_opt_fn: free use */
	const tool_choice *choices; /**< tool_opt_choice(): ends with a NULL name */
};

/** A command's --help around its table. */
typedef struct tool_cmd_doc {
	const char *name;  /**< "build"; NULL: the tool itself */
	const char *about; /**< the description, between usage and options */
	const char *notes; /**< after the options (formats, exit status); may be NULL */
	unsigned flags;    /**< TOOL_PARSE_* */
} tool_cmd_doc;

/**
 * Reads argv[1..argc) against the table @p opts (ended by TOOL_END):
 * --name, --name=VALUE, --name VALUE, -x, arguments in table order, "--"
 * ends the options; -h or --help prints the help to stdout. Checks that
 * the required arguments and options were given. With TOOL_PARSE_STOP
 * parsing ends after the first argument and *next is the index after it
 * (argc when there is none).
 * @return EXIT_OK, EXIT_USAGE (message printed) or TOOL_HELP.
 */
int tool_opt_parse(const tool_cmd_doc *doc, const tool_opt *opts, int argc, char **argv, int *next);

/** Writes the help of a command: usage line, description, options, notes. */
void tool_opt_help(FILE *f, const tool_cmd_doc *doc, const tool_opt *opts);

/* ---- value parsers ---------------------------------------------------------------- */

/** uint64_t in [min, max]. */
int tool_opt_u64(const tool_opt *o, const char *cmd, const char *s);
/** uint32_t in [min, max]. */
int tool_opt_u32(const tool_opt *o, const char *cmd, const char *s);
/** int in [min, max] (a sign is allowed). */
int tool_opt_int(const tool_opt *o, const char *cmd, const char *s);
/** A finite double >= min (> min with TOOL_OPT_ABOVE). */
int tool_opt_double(const tool_opt *o, const char *cmd, const char *s);
/** size_t bytes > 0 from a size like 512M, 2G, 1048576 (binary multiples). */
int tool_opt_size(const tool_opt *o, const char *cmd, const char *s);
/** uint64_t >= 1 from a count like 5000, 200k, 1.5M (decimal multiples, at most 1e12). */
int tool_opt_count(const tool_opt *o, const char *cmd, const char *s);
/** int: the value of the name in o->choices. */
int tool_opt_choice(const tool_opt *o, const char *cmd, const char *s);

/** A gradient variant of the reference networks, as --variant gives it. */
typedef struct tool_variant {
	pspace_variant variant;
	uint32_t mc_samples; /**< mc:T */
	const char *name;    /**< the text given */
} tool_variant;

/** tool_variant: classif_logits, mc:T (1 <= T < 2^32), regression or empirical. */
int tool_opt_variant(const tool_opt *o, const char *cmd, const char *s);

/** The choices of --precision (stored tiles): f32, f64, bf16, f16 as pspace_dtype. */
extern const tool_choice tool_precisions[];

/* ---- table entries ---------------------------------------------------------------- */

#define TOOL_END                                                                                   \
	{                                                                                          \
		.type = TOOL_OPT_END                                                               \
	}
#define TOOL_GROUP(text)                                                                           \
	{                                                                                          \
		.type = TOOL_OPT_GROUP, .help = (text)                                             \
	}
/** A positional argument stored as text; flags: TOOL_OPT_REQUIRED or 0. */
#define TOOL_ARG(nm, ptr, fl)                                                                      \
	{                                                                                          \
		.type = TOOL_OPT_ARG, .name = (nm), .value = (ptr), .flags = (fl)                  \
	}
/** --nm: *(int *)ptr = v. */
#define TOOL_SWITCH(nm, ptr, v, h)                                                                 \
	{                                                                                          \
		.type = TOOL_OPT_SWITCH, .name = (nm), .value = (ptr), .ival = (v), .help = (h)    \
	}
/** --nm VN, kept as text (const char **). */
#define TOOL_STR(nm, vn, ptr, h)                                                                   \
	{                                                                                          \
		.type = TOOL_OPT_VALUE, .name = (nm), .value = (ptr), .value_name = (vn),          \
		.help = (h)                                                                        \
	}
/** --nm VN through a parser with bounds. */
#define TOOL_NUM(nm, vn, ptr, fn, lo, hi, h)                                                       \
	{                                                                                          \
		.type = TOOL_OPT_VALUE, .name = (nm), .value = (ptr), .parse = (fn),               \
		.value_name = (vn), .help = (h), .min = (lo), .max = (hi)                          \
	}
/** --nm VN, one of @p ch (an int). */
#define TOOL_CHOICE(nm, vn, ptr, ch, h)                                                            \
	{                                                                                          \
		.type = TOOL_OPT_VALUE, .name = (nm), .value = (ptr), .parse = tool_opt_choice,    \
		.value_name = (vn), .help = (h), .choices = (ch)                                   \
	}
/** --nm VN through a parser of the command's own, with an int for it. */
#define TOOL_FN(nm, vn, ptr, fn, iv, h)                                                            \
	{                                                                                          \
		.type = TOOL_OPT_VALUE, .name = (nm), .value = (ptr), .parse = (fn),               \
		.value_name = (vn), .help = (h), .ival = (iv)                                      \
	}

/* Options several commands share, with one meaning and one bound each. */

/** --threads N (int*): 0 = all cores. */
#define TOOL_THREADS(ptr)                                                                          \
	TOOL_NUM("threads", "N", ptr, tool_opt_int, 0, 4096, "worker threads (default: all cores)")
/** --mem SIZE (size_t*). */
#define TOOL_MEM(ptr, h) TOOL_NUM("mem", "SIZE", ptr, tool_opt_size, 1, 0, h)
/** --json (int*). */
#define TOOL_JSON(ptr, h) TOOL_SWITCH("json", ptr, 1, h)
/** --seed S (uint64_t*). */
#define TOOL_SEED(ptr, h) TOOL_NUM("seed", "S", ptr, tool_opt_u64, 0, (double)UINT64_MAX, h)

#endif
