/*
 * Shared declarations of the pspace tool: the subcommands, exit codes,
 * error printing and the terminal progress bar.
 */
#ifndef PSPACE_TOOLS_CMD_H
#define PSPACE_TOOLS_CMD_H

#include <stdint.h>
#include <stdio.h>

#include "pspace.h"

/* Exit codes: usage errors and runtime errors are told apart. */
enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

typedef struct tool_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} tool_cmd;

int cmd_build(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_factor(int argc, char **argv);
int cmd_version(int argc, char **argv);
/* inspection (tools/inspect.h) */
int cmd_ls(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_compact(int argc, char **argv);
int cmd_export(int argc, char **argv);

/**
 * Installs the tool's SIGSEGV/SIGBUS/SIGABRT handler (tools/guard.c): a fault
 * raised by a read of a damaged store (pspace_store_fault) prints
 * "pspace: store S is corrupt (...)" with a hint to verify and exits 1;
 * other faults keep their default action.
 */
void tool_guard_install(void);

/** Prints "pspace: <what>: <strerror>[: detail]" to stderr; @return EXIT_RUNTIME. */
int tool_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Prints "pspace: <msg>" and a hint to stderr; @return EXIT_USAGE. */
int tool_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Parses a size like 512M, 2G, 1048576 into bytes; @return 0 or -1. */
int tool_parse_size(const char *s, uint64_t *out);
/**
 * Where an output file @p path is written before it replaces @p path:
 * "path.tmp" into @p tmp (@p cap bytes), renamed over @p path when
 * complete; or @p path itself when it exists and is not a regular file
 * (/dev/null, a FIFO), which a rename would replace.
 * @return 1 when @p tmp is to be renamed, 0 when it is @p path.
 */
int tool_out_tmp(char *tmp, size_t cap, const char *path);
/** Formats @p bytes as "1.23 GiB" into @p buf. */
const char *tool_fmt_bytes(uint64_t bytes, char *buf, size_t cap);
/**
 * Makes room for one more element in the array *@p arrp of @p n elements
 * of @p size bytes and capacity *@p cap, doubling it (16 at first).
 * @return 0, or -1 out of memory (the array unchanged).
 */
int tool_grow(void *arrp, size_t *cap, size_t n, size_t size);
/** Seconds on a monotonic clock. */
double tool_now(void);

/** A progress bar on stderr, drawn only when stderr is a terminal. */
typedef struct tool_progress {
	const char *label;
	uint64_t total;
	uint64_t done;
	double start, last_draw;
	int active;
} tool_progress;

void tool_progress_start(tool_progress *p, const char *label, uint64_t total);
void tool_progress_update(tool_progress *p, uint64_t done);
void tool_progress_end(tool_progress *p);

#endif
