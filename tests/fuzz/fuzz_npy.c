/*
 * fuzz_npy: any bytes as an .npy file. Opening either fails with an error
 * or gives a header whose data the file holds exactly; then every element
 * reads (as double, and as int64 from integer files) without a crash.
 */
#include <stdlib.h>

#include "fuzz_util.h"
#include "pspace/npy.h"

#define CHUNK 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[96];
	static double buf[CHUNK];
	static int64_t ibuf[CHUNK];
	pspace_npy_info info;
	pspace_npy *f = NULL;

	if (!path[0])
		snprintf(path, sizeof(path), "%s/in.npy", fuzz_dir());
	fuzz_write_file(path, data, size);
	if (pspace_npy_open(&f, path) != 0)
		return 0;
	if (pspace_npy_info_get(&info, f) != 0)
		abort();
	/* the open checked the size: header plus data is the whole file */
	if (info.data_offset > size || info.ndim < 0 || info.ndim > 4)
		abort();
	for (uint64_t first = 0; first < info.count; first += CHUNK) {
		uint64_t n = info.count - first < CHUNK ? info.count - first : CHUNK;

		if (pspace_npy_read(f, first, n, buf) != 0)
			break;
		if (info.dtype == PSPACE_I64 && pspace_npy_read_i64(f, first, n, ibuf) != 0)
			break;
	}
	/* a read past the end is an error, not a crash */
	if (pspace_npy_read(f, info.count, 1, buf) == 0)
		abort();
	pspace_npy_close(f);
	return 0;
}
