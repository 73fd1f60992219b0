/*
 * pspace compact: writes a compacted copy of a store (free pages dropped).
 */
#include <string.h>

#include "inspect.h"
#include "opt.h"

static const tool_cmd_doc compact_doc = {
    "compact",
    "Writes a compacted copy of STORE into the new store directory OUT (free\n"
    "pages left by removed matrices are dropped) and prints the file sizes\n"
    "before and after. STORE is not changed; replace it with OUT yourself.\n",
    NULL, 0};

int cmd_compact(int argc, char **argv)
{
	const char *path = NULL, *outp = NULL;
	pspace_store *s = NULL, *o = NULL;
	pspace_store_stat before, after;
	char b1[32], b2[32];
	int ret, rc;
	const tool_opt opts[] = {
	    TOOL_ARG("STORE", &path, TOOL_OPT_REQUIRED),
	    TOOL_ARG("OUT", &outp, TOOL_OPT_REQUIRED),
	    TOOL_END,
	};

	ret = insp_begin(&compact_doc, opts, argc, argv, &path, 1, &s);
	if (!s)
		return ret;
	rc = pspace_store_stat_get(&before, s);
	if (rc == 0)
		rc = pspace_store_compact(s, outp);
	if (rc) {
		ret = tool_fail(rc, "store %s: compacting into %s", path, outp);
		goto out;
	}
	ret = insp_open_store(outp, 1, &o);
	if (ret)
		goto out;
	rc = pspace_store_stat_get(&after, o);
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
