/*
 * pspace compact: writes a compacted copy of a store (free pages dropped).
 */
#include <string.h>

#include "inspect.h"

static const char compact_help[] =
    "usage: pspace compact STORE OUT\n\n"
    "Writes a compacted copy of STORE into the new store directory OUT (free\n"
    "pages left by removed matrices are dropped) and prints the file sizes\n"
    "before and after. STORE is not changed; replace it with OUT yourself.\n";

int cmd_compact(int argc, char **argv)
{
	const char *path = NULL, *outp = NULL;
	pspace_store *s = NULL, *o = NULL;
	pspace_store_stat before, after;
	char b1[32], b2[32];
	int ret, rc;

	for (int i = 1; i < argc; i++) {
		if (tool_is_help(argv[i])) {
			fputs(compact_help, stdout);
			return EXIT_OK;
		} else if (argv[i][0] == '-') {
			return tool_usage_error("compact", "compact: unknown option '%s'", argv[i]);
		} else if (!path) {
			path = argv[i];
		} else if (!outp) {
			outp = argv[i];
		} else {
			return tool_usage_error("compact", "compact: unexpected argument '%s'",
			                        argv[i]);
		}
	}
	if (!outp)
		return tool_usage_error("compact", "compact: missing %s", path ? "OUT" : "STORE");
	ret = insp_open_store(path, 1, &s);
	if (ret)
		return ret;
	rc = pspace_store_stat_get(s, &before);
	if (rc == 0)
		rc = pspace_store_compact(s, outp);
	if (rc) {
		ret = tool_fail(rc, "store %s: compacting into %s", path, outp);
		goto out;
	}
	ret = insp_open_store(outp, 1, &o);
	if (ret)
		goto out;
	rc = pspace_store_stat_get(o, &after);
	if (rc) {
		ret = tool_fail(rc, "store %s", outp);
		goto out;
	}
	printf("%s: %s -> %s: %s (%llu matrices)\n", path,
	       tool_fmt_bytes(before.file_bytes, b1, sizeof(b1)), outp,
	       tool_fmt_bytes(after.file_bytes, b2, sizeof(b2)),
	       (unsigned long long)after.matrices);
out:
	pspace_store_close(o);
	pspace_store_close(s);
	return ret;
}
