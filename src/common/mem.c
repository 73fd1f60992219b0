#define _DEFAULT_SOURCE /* madvise */
#include "common/mem.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *pspace_alloc_big(size_t bytes)
{
	void *p;
	size_t n, align = bytes < 2 * HUGE_PAGE ? 64 : HUGE_PAGE;

	/* aligned_alloc() wants a multiple of the alignment */
	n = (bytes + align - 1) / align * align;
	if (n < bytes)
		return NULL;
	p = aligned_alloc(align, n ? n : align);
	if (align < HUGE_PAGE)
		return p;
#ifdef MADV_HUGEPAGE
	if (p)
		(void)madvise(p, n, MADV_HUGEPAGE);
#endif
	return p;
}
