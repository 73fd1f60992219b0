/*
 * Error codes, their names, and the per-thread detail message.
 */
#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DETAIL_MAX 1024

static _Thread_local char detail[DETAIL_MAX];

const char *pspace_strerror(int code)
{
	switch (code) {
	case PSPACE_OK: return "success";
	case PSPACE_EINVAL: return "invalid argument";
	case PSPACE_ENOMEM: return "out of memory";
	case PSPACE_EIO: return "I/O error";
	case PSPACE_ENOTFOUND: return "not found";
	case PSPACE_EEXIST: return "already exists";
	case PSPACE_ECORRUPT: return "corrupt data";
	case PSPACE_EVERSION: return "unsupported store format version";
	case PSPACE_EFULL: return "disk or store map full";
	case PSPACE_EINCOMPLETE: return "matrix build incomplete";
	case PSPACE_EBUSY: return "store busy";
	case PSPACE_ESTORE: return "store (LMDB) error";
	case PSPACE_ECODEC: return "codec (zstd) error";
	case PSPACE_EFORMAT: return "malformed input";
	case PSPACE_ENOTSUP: return "not supported";
	case PSPACE_EDIM: return "dimension mismatch";
	case PSPACE_ENOCONV: return "no convergence";
	case PSPACE_ENUMERIC: return "numerical failure";
	case PSPACE_EBLIS: return "BLIS kernel configuration error";
	default: return "unknown error";
	}
}

const char *pspace_errdetail(void)
{
	return detail;
}

void pspace_errclear(void)
{
	detail[0] = '\0';
}

int pspace_err_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return code;
}

int pspace_errdetail_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return code;
}

int pspace_err_prefix(int code, const char *fmt, ...)
{
	char buf[2 * DETAIL_MAX + 2];
	size_t n;
	va_list ap;

	if (code == 0)
		return 0;
	va_start(ap, fmt);
	vsnprintf(buf, DETAIL_MAX, fmt, ap);
	va_end(ap);
	n = strlen(buf);
	buf[n++] = ':';
	buf[n++] = ' ';
	strcpy(buf + n, detail[0] != '\0' ? detail : pspace_strerror(code));
	n = strlen(buf);
	if (n >= DETAIL_MAX)
		n = DETAIL_MAX - 1; /* keep the head: it says where */
	memcpy(detail, buf, n);
	detail[n] = '\0';
	return code;
}

int pspace_err_from_errno(int e)
{
	switch (e) {
	case 0: return PSPACE_OK;
	case ENOSPC:
	case EFBIG:
	case EDQUOT: return PSPACE_EFULL;
	case ENOMEM: return PSPACE_ENOMEM;
	case ENOENT: return PSPACE_ENOTFOUND;
	case EEXIST: return PSPACE_EEXIST;
	case EINVAL: return PSPACE_EINVAL;
	case EBUSY:
	case EAGAIN: return PSPACE_EBUSY;
	default: return PSPACE_EIO;
	}
}
