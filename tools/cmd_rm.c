/*
 * pspace rm: removes a matrix (complete or not) with its tiles and arrays.
 */
#include <string.h>

#include "inspect.h"
#include "opt.h"

static const tool_cmd_doc rm_doc = {
    "rm",
    "Removes matrix NAME (complete, or an interrupted build) from STORE with\n"
    "its tiles and arrays. The file does not shrink: freed pages are reused\n"
    "by later writes; 'pspace compact' writes a smaller copy.\n",
    NULL, 0};

int cmd_rm(int argc, char **argv)
{
	const char *path = NULL, *name = NULL;
	pspace_matrix_info mi;
	pspace_store *s = NULL;
	char b[32];
	int ret, rc;
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &path, TOOL_OPT_REQUIRED),
	    TOOL_ARG("NAME", &name, TOOL_OPT_REQUIRED),
	    TOOL_END,
	};

	ret = insp_begin(&rm_doc, opts, argc, argv, &path, 0, &s);
	if (!s)
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
