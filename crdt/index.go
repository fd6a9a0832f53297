package crdt

import "hash/maphash"

// hashIndex finds positions in a slice by the key stored there: an
// open-addressing hash table (linear probing, at most half full) of
// int32 positions. It replaces a Go map from key to position, which
// would store each key a second time: a mesh peer holds a Map entry per
// member, and a simulator thousands of peers, so the 8 to 16 bytes a key
// costs here (4-byte positions, a quarter to half of them in use),
// against 40 to 60 in a map, and the pointers the collector no longer
// follows, matter. The caller supplies the hash of a key and
// the key test at a position; every method takes them as functions so
// that one table serves keys and writer ids alike.
type hashIndex struct {
	pos []int32 // position + 1; 0 is empty. Length 0 or a power of two.
	n   int
}

// seed hashes every index of the process. Table layouts differ between
// processes, but nothing iterates a table, so no order leaks out.
var seed = maphash.MakeSeed()

func hashOf[K comparable](k K) uint64 { return maphash.Comparable(seed, k) }

// find returns the position whose key has hash h and passes is, or -1.
func (x *hashIndex) find(h uint64, is func(int32) bool) int32 {
	if len(x.pos) == 0 {
		return -1
	}
	mask := uint64(len(x.pos) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		p := x.pos[i]
		if p == 0 {
			return -1
		}
		if is(p - 1) {
			return p - 1
		}
	}
}

// insert adds position p, whose key has hash h and is not in the table.
// hashAt returns the hash of the key at a position, for resizing.
func (x *hashIndex) insert(h uint64, p int32, hashAt func(int32) uint64) {
	if 2*(x.n+1) > len(x.pos) {
		x.resize(x.n+1, hashAt)
	}
	mask := uint64(len(x.pos) - 1)
	i := h & mask
	for x.pos[i] != 0 {
		i = (i + 1) & mask
	}
	x.pos[i] = p + 1
	x.n++
}

// reserve makes room for n positions in all without resizing.
func (x *hashIndex) reserve(n int, hashAt func(int32) uint64) {
	if 2*n > len(x.pos) {
		x.resize(n, hashAt)
	}
}

// resize rebuilds the table for at least n positions, half full at most.
func (x *hashIndex) resize(n int, hashAt func(int32) uint64) {
	size := 8
	for size < 2*n {
		size *= 2
	}
	old := x.pos
	x.pos = make([]int32, size)
	mask := uint64(size - 1)
	for _, p := range old {
		if p == 0 {
			continue
		}
		i := hashAt(p-1) & mask
		for x.pos[i] != 0 {
			i = (i + 1) & mask
		}
		x.pos[i] = p
	}
}

// remove deletes position p, whose key has hash h, shifting back the
// entries after it so that no probe sequence is broken (no tombstones).
func (x *hashIndex) remove(h uint64, p int32, hashAt func(int32) uint64) {
	mask := uint64(len(x.pos) - 1)
	i := h & mask
	for x.pos[i] != p+1 {
		i = (i + 1) & mask
	}
	for j := i; ; {
		j = (j + 1) & mask
		q := x.pos[j]
		if q == 0 {
			break
		}
		// The entry at j may fill the hole at i unless its home slot k
		// lies cyclically in (i, j].
		k := hashAt(q-1) & mask
		if i <= j && i < k && k <= j || i > j && (i < k || k <= j) {
			continue
		}
		x.pos[i] = q
		i = j
	}
	x.pos[i] = 0
	x.n--
}

// clone returns an independent copy.
func (x hashIndex) clone() hashIndex {
	if x.pos == nil {
		return hashIndex{}
	}
	return hashIndex{pos: append([]int32(nil), x.pos...), n: x.n}
}
