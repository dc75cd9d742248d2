//go:build linux && cgo

// Package cmalloc gives the process one C allocator arena, as a side effect
// of being imported (import it from main only):
//
//	import _ "github.com/kafkagate/gateway/internal/cmalloc"
//
// librdkafka's memory comes from glibc's malloc. The producer makes four C
// allocations per record inside librdkafka (the message, its header list,
// the list's array and the header) on whichever thread calls into it, and
// frees them on the thread that serves the delivery reports. glibc gives
// each thread an arena of its own, so nearly every free lands in another
// thread's arena: it takes that arena's lock, and the producing thread's
// next allocation misses its cache and sorts through its bins. With one
// arena for the whole process the gateway spent about a sixth less CPU per
// produced record.
//
// glibc fixes its arena limit at the first allocation of a second thread,
// so the limit is set by a C constructor, before the Go runtime starts any
// thread. MALLOC_ARENA_MAX in the environment wins (glibc applies it
// itself, and the constructor then leaves the limit alone).
package cmalloc

/*
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// gw_one_arena is 1 once the constructor set the limit.
static int gw_one_arena;

__attribute__((constructor)) static void gw_limit_arenas(void) {
	if (getenv("MALLOC_ARENA_MAX") == NULL)
		gw_one_arena = mallopt(M_ARENA_MAX, 1) == 1;
}

static int gw_limited(void) { return gw_one_arena; }

// gw_heaps counts the heaps (arenas) malloc_info reports, or -1.
static int gw_heaps(void) {
	char *buf = NULL;
	size_t len = 0;
	int n = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL)
		return -1;
	if (malloc_info(0, f) != 0) {
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	for (const char *p = buf; (p = strstr(p, "<heap nr=")) != NULL; p++)
		n++;
	free(buf);
	return n;
}

// gw_churn allocates and frees n blocks of size bytes, one at a time.
static void gw_churn(int n, size_t size) {
	for (int i = 0; i < n; i++)
		free(malloc(size));
}
*/
import "C"

// OneArena reports whether the process runs on one arena because of this
// package (false when MALLOC_ARENA_MAX set the limit instead).
func OneArena() bool { return C.gw_limited() == 1 }

// Arenas is how many arenas the C allocator has made so far, or -1 when it
// cannot tell.
func Arenas() int { return int(C.gw_heaps()) }

// churn allocates and frees n blocks of size bytes of C memory on the
// calling thread (for the tests).
func churn(n, size int) { C.gw_churn(C.int(n), C.size_t(size)) }
