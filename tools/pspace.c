/*
 * pspace - the command-line tool: a table of subcommands, one file each.
 */
#include <stdlib.h>
#include <string.h>

#include "opt.h"
#include "par.h"

static const tool_cmd commands[] = {
    {"build", cmd_build, "build a Fisher matrix from gradients (.npy) or a reference network"},
    {"demo", cmd_demo, "the main job: a Fisher in every representation, compared, pictured"},
    {"eval", cmd_eval, "evaluate an expression over stored matrices (mv, solve, ...)"},
    {"factor", cmd_factor, "out-of-core Cholesky factor of a Dense or BlockDiag matrix + damping"},
    {"version", cmd_version, "print library, store format and BLIS kernel versions"},
    {"ls", cmd_ls, "list the matrices of a store"},
    {"info", cmd_info, "everything the store knows about one matrix"},
    {"stat", cmd_stat, "tiles, bytes, compression ratios, LMDB page statistics"},
    {"verify", cmd_verify, "decode every tile and check every checksum"},
    {"rm", cmd_rm, "remove a matrix"},
    {"compact", cmd_compact, "write a compacted copy of a store"},
    {"export", cmd_export, "a matrix, block, diagonal or factors as .npy; a PNG picture"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/*
 * 1 for the commands that run under mpirun: the collective build and eval,
 * and those that only read (every rank reading, rank 0 printing).
 */
static int par_command(const char *name)
{
	static const char *const ok[] = {"build", "eval",   "ls",     "info",
	                                 "stat",  "verify", "version"};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(name, ok[i]) == 0)
			return 1;
	return 0;
}

/* --blis-arch NAME: requested before BLIS starts. */
static int blis_arch(const tool_opt *o, const char *cmd, const char *name)
{
	(void)o;
	if (pspace_blis_arch_request(name) != 0)
		return tool_usage_error(cmd, "--blis-arch: %s", pspace_errdetail());
	return EXIT_OK;
}

/* The list of commands, after the options in --help. */
static void command_list(char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "Commands:\n");

	for (size_t i = 0; i < NCOMMANDS && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "  %-10s %s\n", commands[i].name,
		                      commands[i].summary);
	if (n < cap)
		snprintf(buf + n, cap - n, "\nEach command takes --help.\n");
}

static int run(int argc, char **argv)
{
	const char *command = NULL;
	char notes[2048];
	const tool_cmd_doc doc = {
	    NULL,
	    "Stores and computes with the d x d parameter-space matrices (Fisher,\n"
	    "Gauss-Newton, gradient covariances) of neural networks.\n",
	    notes, TOOL_PARSE_STOP};
	int version = 0, next, rc;
	const tool_opt opts[] = {
	    TOOL_ARG("COMMAND", &command, 0),
	    TOOL_ARG("ARGS...", NULL, 0),
	    TOOL_FN("blis-arch", "NAME", NULL, blis_arch, 0,
	            "BLIS kernel set: auto (default: the fastest, measured\n"
	            "once per CPU and cached), calibrate (measure again), zen3,\n"
	            "skx, haswell, generic, ... (also $PSPACE_BLIS_ARCH;\n"
	            "$BLIS_ARCH_TYPE wins)"),
	    TOOL_SWITCH("version", &version, 1, "same as 'pspace version'"),
	    TOOL_END,
	};

	tool_guard_install();
	command_list(notes, sizeof(notes));
	rc = tool_opt_parse(&doc, opts, argc, argv, &next);
	if (rc == TOOL_HELP)
		return EXIT_OK;
	if (rc)
		return rc;
	if (version)
		return cmd_version(1, argv);
	if (!command) {
		tool_opt_help(stderr, &doc, opts);
		return EXIT_USAGE;
	}
	for (size_t c = 0; c < NCOMMANDS; c++) {
		if (strcmp(command, commands[c].name) != 0)
			continue;
		if (tool_par_active() && !par_command(command))
			return tool_usage_error(NULL,
			                        "%s does not run under mpirun (build and eval do; "
			                        "ls, info, stat and verify read a sharded store "
			                        "without it)",
			                        command);
		return commands[c].run(argc - next + 1, argv + next - 1);
	}
	return tool_usage_error(NULL, "unknown command '%s'", command);
}

int main(int argc, char **argv)
{
	int rc = tool_par_init(&argc, &argv);

	if (rc == EXIT_OK)
		rc = run(argc, argv);
	tool_par_finish();
	return rc;
}
