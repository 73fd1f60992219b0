/*
 * pspace - the command-line tool: a table of subcommands, one file each.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

static const tool_cmd commands[] = {
    {"build", cmd_build, "build a Fisher matrix from gradients (.npy) or a reference network"},
    {"demo", cmd_demo, "the main job: a Fisher in every representation, compared, pictured"},
    {"eval", cmd_eval, "evaluate an expression over stored matrices (mv, solve, ...)"},
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

static void usage(FILE *f)
{
	fputs("usage: pspace [--blis-arch NAME] COMMAND [ARGS...]\n"
	      "       pspace --version | --help\n\n"
	      "Stores and computes with the d x d parameter-space matrices (Fisher,\n"
	      "Gauss-Newton, gradient covariances) of neural networks.\n\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fputs("\nOptions:\n"
	      "  --blis-arch NAME  BLIS kernel set: auto (default), zen3, skx, haswell,\n"
	      "                    generic, ... (also $PSPACE_BLIS_ARCH; $BLIS_ARCH_TYPE wins)\n"
	      "  --version         same as 'pspace version'\n\n"
	      "Each command takes --help.\n",
	      f);
}

int main(int argc, char **argv)
{
	int i = 1;

	while (i < argc && argv[i][0] == '-') {
		if (tool_is_help(argv[i])) {
			usage(stdout);
			return EXIT_OK;
		} else if (strcmp(argv[i], "--version") == 0) {
			return cmd_version(1, argv + i);
		} else if (strcmp(argv[i], "--blis-arch") == 0 && i + 1 < argc) {
			int rc = pspace_blis_arch_request(argv[i + 1]);
			if (rc)
				return tool_usage_error(NULL, "--blis-arch: %s",
				                        pspace_errdetail());
			i += 2;
		} else {
			return tool_usage_error(NULL, "unknown option '%s'", argv[i]);
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (size_t c = 0; c < NCOMMANDS; c++)
		if (strcmp(argv[i], commands[c].name) == 0)
			return commands[c].run(argc - i, argv + i);
	return tool_usage_error(NULL, "unknown command '%s'", argv[i]);
}
