/*
 * Helpers of the pspace tool: error messages, sizes, clock, progress bar.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"

int tool_fail(int rc, const char *fmt, ...)
{
	va_list ap;
	const char *detail = pspace_errdetail();

	fputs("pspace: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s", pspace_strerror(rc));
	if (detail && *detail)
		fprintf(stderr, ": %s", detail);
	fputc('\n', stderr);
	return EXIT_RUNTIME;
}

int tool_grow(void *arrp, size_t *cap, size_t n, size_t size)
{
	void *old, *p;
	size_t c;

	if (n < *cap)
		return 0;
	c = *cap ? 2 * *cap : 16;
	/* through memcpy: *arrp is a T *, not a void * */
	memcpy(&old, arrp, sizeof(old));
	p = realloc(old, c * size);
	if (!p)
		return -1;
	memcpy(arrp, &p, sizeof(p));
	*cap = c;
	return 0;
}

int tool_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("pspace: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'pspace%s%s --help'.\n", cmd ? " " : "", cmd ? cmd : "");
	return EXIT_USAGE;
}

int tool_parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	double mul = 1;

	if (end == s || v < 0)
		return -1;
	switch (*end) {
	case '\0': break;
	case 'k':
	case 'K':
		mul = 1024.0;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1024.0 * 1024;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1024.0 * 1024 * 1024;
		end++;
		break;
	case 't':
	case 'T':
		mul = 1024.0 * 1024 * 1024 * 1024;
		end++;
		break;
	default: return -1;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B')
		end++;
	if (*end != '\0')
		return -1;
	*out = (uint64_t)(v * mul);
	return 0;
}

const char *tool_fmt_bytes(uint64_t bytes, char *buf, size_t cap)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024.0 && u < 4) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, cap, "%.2f %s", v, units[u]);
	return buf;
}

double tool_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void progress_draw(tool_progress *p)
{
	const int width = 30;
	double frac = p->total ? (double)p->done / (double)p->total : 0.0;
	int fill = (int)(frac * width);
	double el = tool_now() - p->start;

	if (frac > 1.0)
		frac = 1.0;
	fprintf(stderr, "\r%-18.18s [", p->label);
	for (int i = 0; i < width; i++)
		fputc(i < fill ? '#' : '.', stderr);
	fprintf(stderr, "] %5.1f%%  %6.1fs", 100.0 * frac, el);
	if (frac > 0.02 && frac < 1.0)
		fprintf(stderr, "  eta %5.1fs", el / frac - el);
	else
		fputs("            ", stderr);
	fflush(stderr);
}

void tool_progress_start(tool_progress *p, const char *label, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	p->total = total;
	p->start = tool_now();
	p->active = isatty(STDERR_FILENO);
	if (p->active)
		progress_draw(p);
}

void tool_progress_update(tool_progress *p, uint64_t done)
{
	double t;

	p->done = done;
	if (!p->active)
		return;
	t = tool_now();
	if (t - p->last_draw < 0.1 && done < p->total)
		return;
	p->last_draw = t;
	progress_draw(p);
}

void tool_progress_end(tool_progress *p)
{
	if (!p->active)
		return;
	p->done = p->total;
	progress_draw(p);
	fputc('\n', stderr);
}

int tool_out_tmp(char *tmp, size_t cap, const char *path)
{
	struct stat sb;

	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
		snprintf(tmp, cap, "%s", path);
	else
		snprintf(tmp, cap, "%s.tmp", path);
	return strcmp(tmp, path) != 0;
}
