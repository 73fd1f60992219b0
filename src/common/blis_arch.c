/*
 * Predicting BLIS's kernel choice and choosing a better one when BLIS does
 * not recognise the CPU.
 *
 * BLIS 0.9.0 picks a sub-configuration from cpuid once, at its first use,
 * unless $BLIS_ARCH_TYPE names one. For CPUs newer than its tables (AMD
 * family 0x1a, "Zen 5") it silently uses the portable "generic" kernels,
 * 3-5x slower. pspace mirrors its rules here to notice that case.
 */
#include "common/blis_arch.h"

#include <blis.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void)
{
	uint32_t eax, edx;

	__asm__ __volatile__("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
	return ((uint64_t)edx << 32) | eax;
}

void pspace_cpu_query(pspace_cpu *out)
{
	unsigned int eax, ebx, ecx, edx, max;
	char vendor[13] = {0};

	memset(out, 0, sizeof(*out));
	max = __get_cpuid_max(0, NULL);
	if (max < 1)
		return;
	__cpuid(0, eax, ebx, ecx, edx);
	memcpy(vendor, &ebx, 4);
	memcpy(vendor + 4, &edx, 4);
	memcpy(vendor + 8, &ecx, 4);
	if (strcmp(vendor, "GenuineIntel") == 0)
		out->vendor = PSPACE_CPU_INTEL;
	else if (strcmp(vendor, "AuthenticAMD") == 0)
		out->vendor = PSPACE_CPU_AMD;

	__cpuid(1, eax, ebx, ecx, edx);
	uint32_t base_family = (eax >> 8) & 0xf, base_model = (eax >> 4) & 0xf;
	uint32_t ext_family = (eax >> 20) & 0xff, ext_model = (eax >> 16) & 0xf;
	out->family = base_family;
	out->model = base_model;
	if (base_family == 6 || base_family == 15)
		out->model += ext_model << 4;
	if (base_family == 15)
		out->family += ext_family;

	int os_ymm = 0, os_zmm = 0;
	if ((ecx & (1u << 27)) && (ecx & (1u << 26))) {
		uint64_t xcr0 = read_xcr0();
		os_ymm = (xcr0 & 0x6) == 0x6;
		os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;
	}
	if (ecx & (1u << 9))
		out->features |= PSPACE_CPU_SSSE3;
	if ((ecx & (1u << 28)) && os_ymm)
		out->features |= PSPACE_CPU_AVX;
	if ((ecx & (1u << 12)) && os_ymm)
		out->features |= PSPACE_CPU_FMA3;
	if (max >= 7) {
		__cpuid_count(7, 0, eax, ebx, ecx, edx);
		if ((ebx & (1u << 5)) && os_ymm)
			out->features |= PSPACE_CPU_AVX2;
		const uint32_t avx512 = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
		if ((ebx & avx512) == avx512 && os_zmm)
			out->features |= PSPACE_CPU_AVX512;
		/* Knights Landing: F + PF + ER, without DQ/BW/VL */
		const uint32_t knl = (1u << 16) | (1u << 26) | (1u << 27);
		if ((ebx & knl) == knl && os_zmm)
			out->features |= PSPACE_CPU_AVX512ER;
	}
	if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000001u) {
		__cpuid(0x80000001u, eax, ebx, ecx, edx);
		if ((ecx & (1u << 16)) && os_ymm)
			out->features |= PSPACE_CPU_FMA4;
	}
}
#else
void pspace_cpu_query(pspace_cpu *out)
{
	memset(out, 0, sizeof(*out));
}
#endif

static int has(const pspace_cpu *cpu, uint32_t f)
{
	return (cpu->features & f) == f;
}

const char *pspace_blis_predict(const pspace_cpu *cpu)
{
	const uint32_t avx2 = PSPACE_CPU_AVX | PSPACE_CPU_FMA3 | PSPACE_CPU_AVX2;

	if (cpu->vendor == PSPACE_CPU_INTEL) {
		/* BLIS takes skx only when it can count two FMA units, which it
		 * cannot do reliably; haswell is its usual answer on AVX-512 parts. */
		if (has(cpu, avx2))
			return "haswell";
		if (has(cpu, PSPACE_CPU_AVX))
			return "sandybridge";
		if (has(cpu, PSPACE_CPU_SSSE3))
			return "penryn";
		return "generic";
	}
	if (cpu->vendor == PSPACE_CPU_AMD) {
		if (cpu->family == 0x19 && has(cpu, avx2))
			return "zen3";
		if (cpu->family == 0x17 && has(cpu, avx2))
			return cpu->model >= 0x30 ? "zen2" : "zen";
		if (cpu->family == 0x15) {
			if (has(cpu, avx2) && cpu->model >= 0x60 && cpu->model <= 0x7f)
				return "excavator";
			if (has(cpu, PSPACE_CPU_AVX | PSPACE_CPU_FMA3 | PSPACE_CPU_FMA4)) {
				if (cpu->model >= 0x30 && cpu->model <= 0x3f)
					return "steamroller";
				if (cpu->model == 0x02 ||
				    (cpu->model >= 0x10 && cpu->model <= 0x1f))
					return "piledriver";
			}
			if (has(cpu, PSPACE_CPU_AVX | PSPACE_CPU_FMA4) && cpu->model <= 0x01)
				return "bulldozer";
		}
		return "generic";
	}
	return "generic";
}

const char *pspace_blis_fallback(const pspace_cpu *cpu)
{
	if (strcmp(pspace_blis_predict(cpu), "generic") != 0)
		return NULL;
	if (!has(cpu, PSPACE_CPU_AVX | PSPACE_CPU_FMA3 | PSPACE_CPU_AVX2))
		return NULL; /* nothing better than generic to offer */
	/* AVX-512 parts (Zen 4/5 and later, recent Intel): the skx kernels use
	 * the full vector width; AVX2-only AMD parts: zen3; others: haswell. */
	if (has(cpu, PSPACE_CPU_AVX512))
		return "skx";
	return cpu->vendor == PSPACE_CPU_AMD ? "zen3" : "haswell";
}

static void add_candidate(const char **out, int *n, int cap, const char *name)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(out[i], name) == 0)
			return;
	if (*n < cap && pspace_blis_arch_index(name) >= 0)
		out[(*n)++] = name;
}

int pspace_blis_candidates(const char **out, int cap, const pspace_cpu *cpu)
{
	const uint32_t avx2 = PSPACE_CPU_AVX | PSPACE_CPU_FMA3 | PSPACE_CPU_AVX2;
	const char *predicted = pspace_blis_predict(cpu);
	int n = 0;

	if (has(cpu, PSPACE_CPU_AVX512 | avx2))
		add_candidate(out, &n, cap, "skx");
	if (has(cpu, PSPACE_CPU_AVX512ER | avx2))
		add_candidate(out, &n, cap, "knl");
	if (has(cpu, avx2)) {
		add_candidate(out, &n, cap, "haswell");
		add_candidate(out, &n, cap, "zen3");
		add_candidate(out, &n, cap, "zen2");
		add_candidate(out, &n, cap, "zen");
	}
	/* BLIS's own answer always competes, except its portable fallback,
	 * which only serves when nothing else runs here. */
	if (strcmp(predicted, "generic") != 0 || n == 0)
		add_candidate(out, &n, cap, predicted);
	return n;
}

int pspace_blis_arch_index(const char *name)
{
#if defined(__x86_64__)
	static const struct {
		const char *name;
		int id;
	} archs[] = {
	    {"skx", BLIS_ARCH_SKX},
	    {"knl", BLIS_ARCH_KNL},
	    {"haswell", BLIS_ARCH_HASWELL},
	    {"sandybridge", BLIS_ARCH_SANDYBRIDGE},
	    {"penryn", BLIS_ARCH_PENRYN},
	    {"zen3", BLIS_ARCH_ZEN3},
	    {"zen2", BLIS_ARCH_ZEN2},
	    {"zen", BLIS_ARCH_ZEN},
	    {"excavator", BLIS_ARCH_EXCAVATOR},
	    {"steamroller", BLIS_ARCH_STEAMROLLER},
	    {"piledriver", BLIS_ARCH_PILEDRIVER},
	    {"bulldozer", BLIS_ARCH_BULLDOZER},
	    {"generic", BLIS_ARCH_GENERIC},
	};
	char *end;
	long v;

	if (name == NULL || *name == '\0')
		return -1;
	v = strtol(name, &end, 10);
	for (size_t i = 0; i < sizeof(archs) / sizeof(archs[0]); i++) {
		if (*end == '\0' ? v == archs[i].id : strcmp(name, archs[i].name) == 0)
			return archs[i].id;
	}
#else
	(void)name;
#endif
	return -1;
}
