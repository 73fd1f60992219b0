/*
 * pspace version: library version, store format version, BLIS kernels.
 */
#include <string.h>

#include "cmd.h"

int cmd_version(int argc, char **argv)
{
	pspace_blis_info b;
	int json = 0;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (tool_is_help(argv[i])) {
			puts("usage: pspace version [--json]\n\n"
			     "Prints the library version, the store format version it reads and\n"
			     "writes, and the BLIS kernel set in use with the reason it was "
			     "chosen.");
			return EXIT_OK;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = 1;
		} else {
			return tool_usage_error("version", "unknown argument '%s'", argv[i]);
		}
	}
	rc = pspace_blis_info_get(&b);
	if (rc)
		return tool_fail(rc, "cannot initialize BLIS");
	if (json) {
		printf("{\"version\": \"%s\", \"format_version\": %d, \"blis_version\": \"%s\", "
		       "\"blis_arch\": \"%s\", \"blis_reason\": \"%s\", \"cpu\": \"%s\"}\n",
		       pspace_version(), PSPACE_FORMAT_VERSION, b.version, b.arch, b.reason, b.cpu);
	} else {
		printf("pspace %s\n", pspace_version());
		printf("store format version %d\n", PSPACE_FORMAT_VERSION);
		printf("BLIS %s, kernels: %s (%s)\n", b.version, b.arch, b.reason);
		printf("CPU: %s\n", b.cpu);
	}
	return EXIT_OK;
}
