/*
 * pspace rm: removes a matrix (complete or not) with its tiles and arrays.
 */
#include <string.h>

#include "inspect.h"

static const char rm_help[] =
    "usage: pspace rm STORE NAME\n\n"
    "Removes matrix NAME (complete, or an interrupted build) from STORE with\n"
    "its tiles and arrays. The file does not shrink: freed pages are reused\n"
    "by later writes; 'pspace compact' writes a smaller copy.\n";

int cmd_rm(int argc, char **argv)
{
	const char *path = NULL, *name = NULL;
	pspace_matrix_info mi;
	pspace_store *s = NULL;
	char b[32];
	int ret, rc;

	for (int i = 1; i < argc; i++) {
		if (tool_is_help(argv[i])) {
			fputs(rm_help, stdout);
			return EXIT_OK;
		} else if (argv[i][0] == '-') {
			return tool_usage_error("rm", "rm: unknown option '%s'", argv[i]);
		} else if (!path) {
			path = argv[i];
		} else if (!name) {
			name = argv[i];
		} else {
			return tool_usage_error("rm", "rm: unexpected argument '%s'", argv[i]);
		}
	}
	if (!name)
		return tool_usage_error("rm", "rm: missing %s", path ? "NAME" : "STORE");
	ret = insp_open_store(path, 0, &s);
	if (ret)
		return ret;
	ret = insp_matrix_info(s, name, &mi);
	if (ret)
		goto out;
	rc = pspace_store_remove(s, name);
	if (rc) {
		ret = tool_fail(rc, "store %s: removing matrix %s", path, name);
		goto out;
	}
	printf("removed %s (%s, d = %llu, %s)\n", name, pspace_kind_name(mi.kind),
	       (unsigned long long)mi.d, tool_fmt_bytes(insp_stored_bytes(&mi), b, sizeof(b)));
out:
	pspace_store_close(s);
	return ret;
}
