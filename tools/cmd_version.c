/*
 * pspace version: library version, store format version, BLIS kernels.
 */
#include "json.h"
#include "opt.h"

static const tool_cmd_doc version_doc = {
    "version",
    "Prints the library version, the store format version it reads and\n"
    "writes, and the BLIS kernel set in use with the reason it was chosen.\n",
    NULL, 0};

int cmd_version(int argc, char **argv)
{
	pspace_blis_info b;
	int json = 0;
	int rc;
	const tool_opt opts[] = {
	    TOOL_JSON(&json, "the same as one JSON object"),
	    TOOL_END,
	};

	rc = tool_opt_parse(&version_doc, opts, argc, argv, NULL);
	if (rc)
		return rc == TOOL_HELP ? EXIT_OK : rc;
	rc = pspace_blis_info_get(&b);
	if (rc)
		return tool_fail(rc, "cannot initialize BLIS");
	if (json) {
		/* the reason may hold a path: escaped */
		json_writer w;

		json_init(&w, stdout, 1);
		json_begin_object(&w);
		json_kv_string(&w, "version", pspace_version());
		json_kv_int(&w, "format_version", PSPACE_FORMAT_VERSION);
		json_kv_string(&w, "blis_version", b.version);
		json_kv_string(&w, "blis_arch", b.arch);
		json_kv_string(&w, "blis_reason", b.reason);
		json_kv_string(&w, "cpu", b.cpu);
		json_end_object(&w);
		if (json_finish(&w) != 0)
			return tool_fail(PSPACE_EIO, "cannot write the output");
	} else {
		printf("pspace %s\n", pspace_version());
		printf("store format version %d\n", PSPACE_FORMAT_VERSION);
		printf("BLIS %s, kernels: %s (%s)\n", b.version, b.arch, b.reason);
		printf("CPU: %s\n", b.cpu);
	}
	return EXIT_OK;
}
