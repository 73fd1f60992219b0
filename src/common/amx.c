/*
 * Can this process use AMX tiles? (see amx.h)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "common/amx.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if PSPACE_HAVE_AMX
#include <cpuid.h>
#endif

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA  18

static int cpu_ok, amx_ok;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT, amx_once = PTHREAD_ONCE_INIT;

#if PSPACE_HAVE_AMX
static unsigned long long xcr0(void)
{
	unsigned lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (unsigned long long)hi << 32 | lo;
}

static void probe_cpu(void)
{
	unsigned a, b, c, d;
	const char *env = getenv("PSPACE_AMX");
	/* x87/SSE/AVX (0-2), AVX-512 (5-7), tile config and data (17, 18) */
	const unsigned long long need = 0x7ull | 0xe0ull | 0x60000ull;

	if (env && strcmp(env, "0") == 0)
		return;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1)) /* OSXSAVE */
		return;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return;
	/* AVX512F, AVX512BW; AMX-BF16, AMX-TILE */
	if (!(b >> 16 & 1) || !(b >> 30 & 1) || !(d >> 22 & 1) || !(d >> 24 & 1))
		return;
	if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a >> 5 & 1)) /* AVX512_BF16 */
		return;
	cpu_ok = (xcr0() & need) == need;
}

static void probe(void)
{
	amx_ok = pspace_amx_cpu() &&
	         syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}
#else
static void probe_cpu(void)
{
}

static void probe(void)
{
}
#endif

int pspace_amx_cpu(void)
{
	pthread_once(&cpu_once, probe_cpu);
	return cpu_ok;
}

int pspace_amx_available(void)
{
	pthread_once(&amx_once, probe);
	return amx_ok;
}
