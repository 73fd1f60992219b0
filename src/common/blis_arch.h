/*
 * Internal: choosing a BLIS kernel set (sub-configuration) for CPUs that
 * BLIS 0.9.0 does not recognise. Pure functions, unit-tested with
 * synthetic CPU descriptions.
 */
#ifndef PSPACE_SRC_COMMON_BLIS_ARCH_H
#define PSPACE_SRC_COMMON_BLIS_ARCH_H

#include <stdint.h>

enum pspace_cpu_vendor { PSPACE_CPU_OTHER = 0, PSPACE_CPU_INTEL = 1, PSPACE_CPU_AMD = 2 };

/* Feature bits of pspace_cpu.features. */
enum {
	PSPACE_CPU_SSSE3 = 1u << 0,
	PSPACE_CPU_AVX = 1u << 1,
	PSPACE_CPU_FMA3 = 1u << 2,
	PSPACE_CPU_AVX2 = 1u << 3,
	PSPACE_CPU_FMA4 = 1u << 4,
	PSPACE_CPU_AVX512 = 1u << 5,   /* F+DQ+BW+VL, with OS support for zmm state */
	PSPACE_CPU_AVX512ER = 1u << 6, /* F+PF+ER (Xeon Phi), with OS support for zmm state */
};

typedef struct pspace_cpu {
	int vendor;        /* enum pspace_cpu_vendor */
	uint32_t family;   /* display family (base + extended) */
	uint32_t model;    /* display model (base + extended << 4) */
	uint32_t features; /* PSPACE_CPU_* */
} pspace_cpu;

/** Reads the CPU with the cpuid instruction (zeroes on other architectures). */
void pspace_cpu_query(pspace_cpu *out);

/**
 * @return the name of the sub-configuration BLIS 0.9.0 itself picks for
 * @p cpu ("zen3", "haswell", "generic", ...), mirroring its cpuid rules.
 */
const char *pspace_blis_predict(const pspace_cpu *cpu);

/**
 * @return the kernel set pspace requests for @p cpu when BLIS would fall
 * back to "generic" although the CPU has vector units it can use, or NULL
 * when BLIS's own choice should stand.
 */
const char *pspace_blis_fallback(const pspace_cpu *cpu);

/** Most kernel sets pspace_blis_candidates() returns. */
#define PSPACE_BLIS_MAX_CANDIDATES 8

/**
 * Writes into @p out (room for @p cap names, static strings) the kernel
 * sets of this BLIS build that @p cpu can run and that are worth timing:
 * skx with AVX-512 F/DQ/BW/VL, knl with AVX-512 ER, haswell/zen3/zen2/zen
 * with AVX2+FMA, and BLIS's own choice (generic only when nothing else
 * qualifies). @return how many (0 when this BLIS knows none of them, e.g.
 * on another architecture).
 */
int pspace_blis_candidates(const char **out, int cap, const pspace_cpu *cpu);

/**
 * @return the BLIS arch_t index for a sub-configuration name, or -1 if the
 * name is unknown or not built into the x86_64 BLIS this links against.
 * A decimal index string is accepted too.
 */
int pspace_blis_arch_index(const char *name);

#endif
