/*
 * Where the open stores' maps lie: found in /proc/self/maps, advised for
 * huge pages, and kept for faults inside reads of a damaged store, for a
 * program's own signal handler (the library installs none), with where
 * LMDB's code lies and the text of a failed LMDB assertion.
 *
 * Everything a handler reads is in fixed slots of atomics, so
 * pspace_store_fault() is async-signal-safe.
 */
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "store/internal.h"
#include "store/reader.h"

#define SLOTS 32

typedef struct map_slot {
	_Atomic(const pspace_store *) owner;
	_Atomic uintptr_t base;
	_Atomic size_t size;
	_Atomic(const char *) path;
} map_slot;

static map_slot slots[SLOTS];
static _Atomic unsigned open_maps;
static uintptr_t lmdb_lo, lmdb_hi; /* LMDB's executable segment, if a shared object */
static pthread_once_t lmdb_once = PTHREAD_ONCE_INIT;
static char assert_text[512];
static atomic_int asserted;

/* dl_iterate_phdr() callback: the executable segment holding mdb_cursor_get. */
static int find_lmdb(struct dl_phdr_info *info, size_t size, void *ud)
{
	uintptr_t fn = *(uintptr_t *)ud;
	(void)size;

	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || fn < lo ||
		    fn >= lo + ph->p_memsz)
			continue;
		/* Linked statically, LMDB shares the program's code: no range. */
		if (info->dlpi_name && info->dlpi_name[0] && strstr(info->dlpi_name, "lmdb")) {
			lmdb_lo = lo;
			lmdb_hi = lo + ph->p_memsz;
		}
		return 1;
	}
	return 0;
}

static void lmdb_range(void)
{
	int (*fn)(MDB_cursor *, MDB_val *, MDB_val *, MDB_cursor_op) = mdb_cursor_get;
	uintptr_t addr = (uintptr_t)fn;

	dl_iterate_phdr(find_lmdb, &addr);
}

/* LMDB's assertion callback: keeps the text for a SIGABRT handler (abort follows). */
static void on_assert(MDB_env *env, const char *msg)
{
	(void)env;
	strncpy(assert_text, msg, sizeof(assert_text) - 1);
	atomic_store(&asserted, 1);
}

void pspace_store_fault_env(MDB_env *env)
{
	pthread_once(&lmdb_once, lmdb_range);
	mdb_env_set_assert(env, on_assert);
}

/* Transparent huge pages are not "never" (read once; 0 when unknown) and not turned off. */
static int thp_allowed(void)
{
	static _Atomic int allowed = -1;
	int a = atomic_load(&allowed);

	if (a < 0) {
		const char *env = getenv("PSPACE_MAP_HUGE");
		FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
		char line[128] = "";

		if (f) {
			if (!fgets(line, sizeof(line), f))
				line[0] = 0;
			fclose(f);
		}
		a = line[0] && !strstr(line, "[never]") && !(env && strcmp(env, "0") == 0);
		atomic_store(&allowed, a);
	}
	return a;
}

/*
 * Where this process maps the data file of @p s (the first page of the
 * file's mapping in /proc/self/maps), or 0 when unknown. LMDB's own
 * mdb_env_info() reports only a fixed map's address (MDB_FIXEDMAP).
 */
static uintptr_t map_base(const pspace_store *s)
{
	uintptr_t base = 0;
	struct stat st;
	char *line = NULL;
	size_t cap = 0;
	FILE *f;
	int fd;

	if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0)
		return 0;
	f = fopen("/proc/self/maps", "r");
	if (!f)
		return 0;
	while (!base && getline(&line, &cap, f) > 0) {
		unsigned long lo, hi, off, ino;
		unsigned maj, min;
		char perm[8];

		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perm, &off, &maj, &min,
		           &ino) == 7 &&
		    off == 0 && ino == st.st_ino && makedev(maj, min) == st.st_dev)
			base = lo;
	}
	free(line);
	fclose(f);
	return base;
}

/* Advises the map at @p base of @p size bytes for huge pages where they are allowed. */
static void map_advise(pspace_store *s, uintptr_t base, size_t size)
{
	s->map_huge = 0;
#ifdef MADV_HUGEPAGE
	if (base && thp_allowed() && madvise((void *)base, size, MADV_HUGEPAGE) == 0)
		s->map_huge = 1;
#else
	(void)base, (void)size;
#endif
}

int pspace_store_map_huge(const pspace_store *s)
{
	return s->map_huge;
}

int pspace_store_map_range(const pspace_store *s, uintptr_t *base, size_t *size)
{
	*base = s->map_base;
	*size = s->map_base ? s->map_size : 0;
	return *size != 0;
}

void pspace_store_map_track(pspace_store *s, int on)
{
	MDB_envinfo ei;
	uintptr_t base;
	int free_slot = -1, mine = -1;

	for (int i = 0; i < SLOTS; i++) {
		const pspace_store *o = atomic_load(&slots[i].owner);

		if (o == s)
			mine = i;
		else if (!o && free_slot < 0)
			free_slot = i;
	}
	if (!on) {
		s->map_base = 0;
		s->map_size = 0;
		if (mine >= 0) {
			atomic_store(&slots[mine].size, 0);
			atomic_store(&slots[mine].owner, NULL);
			atomic_fetch_sub(&open_maps, 1);
		}
		return;
	}
	if (mdb_env_info(s->env, &ei) != 0)
		return;
	base = map_base(s);
	map_advise(s, base, ei.me_mapsize);
	s->map_base = base;
	s->map_size = ei.me_mapsize;
	if (mine < 0) {
		const pspace_store *none = NULL;

		if (free_slot < 0 ||
		    !atomic_compare_exchange_strong(&slots[free_slot].owner, &none, s))
			return; /* untracked: its faults stay plain crashes */
		mine = free_slot;
		atomic_store(&slots[mine].path, s->path);
		atomic_fetch_add(&open_maps, 1);
	}
	atomic_store(&slots[mine].size, 0);
	atomic_store(&slots[mine].base, base);
	atomic_store(&slots[mine].size, ei.me_mapsize);
}

int pspace_store_fault(const char **path, const char **why, int sig, const void *addr,
                       const void *pc)
{
	uintptr_t a = (uintptr_t)addr, p = (uintptr_t)pc;
	const char *first = NULL;

	*path = NULL;
	*why = NULL;
	if (atomic_load(&open_maps) == 0)
		return 0;
	for (int i = 0; i < SLOTS; i++) {
		uintptr_t base = atomic_load(&slots[i].base);
		size_t size = atomic_load(&slots[i].size);

		if (!atomic_load(&slots[i].owner) || size == 0)
			continue;
		if (!first)
			first = atomic_load(&slots[i].path);
		if (a >= base && a - base < size && (sig == SIGSEGV || sig == SIGBUS)) {
			*path = atomic_load(&slots[i].path);
			*why = sig == SIGBUS ? "a read past the end of its data file (SIGBUS)"
			                     : "a read of its map faulted (SIGSEGV)";
			return 1;
		}
	}
	if (!first)
		return 0;
	*path = first;
	if (sig == SIGABRT && atomic_load(&asserted)) {
		*why = assert_text;
		return 1;
	}
	if (sig == SIGBUS) {
		*why = "a read past the end of its data file (SIGBUS)";
		return 1;
	}
	if (sig == SIGSEGV && lmdb_hi && p >= lmdb_lo && p < lmdb_hi) {
		*why = "LMDB faulted on a damaged B-tree page (SIGSEGV)";
		return 1;
	}
	*path = NULL;
	return 0;
}
