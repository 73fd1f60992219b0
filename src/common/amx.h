/*
 * Internal: whether this process can use AMX tiles (Intel Advanced Matrix
 * Extensions) for the bf16 mm kernel (src/kernel/amx16.c).
 */
#ifndef PSPACE_SRC_COMMON_AMX_H
#define PSPACE_SRC_COMMON_AMX_H

/* The AMX intrinsics and cpuid helpers this code uses: GCC 11 on x86-64. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define PSPACE_HAVE_AMX 1
#else
#define PSPACE_HAVE_AMX 0
#endif

/**
 * @return nonzero when the CPU has AMX-TILE, AMX-BF16 and AVX512-BF16 (with
 * AVX-512 F and BW), the OS saves their state, the compiler could build the
 * kernel, and PSPACE_AMX is not "0" in the environment. Asks the kernel for
 * nothing.
 */
int pspace_amx_cpu(void);

/**
 * pspace_amx_cpu(), and the kernel granted this process the tile data state
 * (arch_prctl ARCH_REQ_XCOMP_PERM, asked once, at the first call: from then
 * on every signal frame of the process holds the tile state, so only the
 * code that runs on AMX asks).
 */
int pspace_amx_available(void);

#endif
