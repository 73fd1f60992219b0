/*
 * Execution settings: threads and memory budget travel in one struct,
 * never in globals; this fills in the defaults.
 */
#include "common/exec.h"

#include <unistd.h>

void pspace_exec_resolve(const pspace_exec *in, pspace_exec *out)
{
	pspace_exec e = {0, 0};

	if (in)
		e = *in;
	if (e.threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		e.threads = n > 0 ? (int)n : 1;
	}
	if (e.mem_budget == 0)
		e.mem_budget = PSPACE_DEFAULT_MEM_BUDGET;
	*out = e;
}
