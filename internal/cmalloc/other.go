//go:build !linux || !cgo

package cmalloc

// OneArena is false where the allocator is not glibc's: nothing is set.
func OneArena() bool { return false }

// Arenas cannot tell here.
func Arenas() int { return -1 }
