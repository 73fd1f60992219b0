/*
 * The tool's guard against damaged stores: LMDB reads its pages through the
 * map without checks, so a damaged B-tree page can make it fault or fail an
 * assertion. The handler asks the library whether the signal came from a
 * read of an open store and, if so, says which store is corrupt and exits
 * with status 1; any other fault keeps its default action (a crash).
 */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "cmd.h"

static char altstack[1 << 16];

/* The faulting instruction, where the architecture tells. */
static const void *fault_pc(const void *uc)
{
	const ucontext_t *u = uc;

#if defined(__x86_64__)
	return (const void *)(uintptr_t)u->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (const void *)(uintptr_t)u->uc_mcontext.pc;
#else
	(void)u;
	return NULL;
#endif
}

static void put(const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	const char *path, *why;

	/* SA_RESETHAND restored the default: returning re-raises a foreign fault. */
	if (!pspace_store_fault(&path, &why, sig, si->si_addr, fault_pc(uc)))
		return;
	put("pspace: store ");
	put(path);
	put(" is corrupt (");
	put(why);
	put("); run 'pspace verify ");
	put(path);
	put("' to see the damage\n");
	_exit(EXIT_RUNTIME);
}

void tool_guard_install(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT};
	stack_t st = {.ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0};
	struct sigaction sa;

	sigaltstack(&st, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}
