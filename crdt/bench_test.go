package crdt

import (
	"fmt"
	"testing"
)

// Benchmarks for the merge and delta paths. Run without -race:
//
//	go test ./crdt -run '^$' -bench . -benchmem -count=3
//
// Targets: ApplyDelta of 1,000 entries under 100 µs; 0 allocs/op
// when every entry is already held; Delta for a partner that lacks k of n
// entries costs O(k log n) or better with few writers (compare n=1000 with
// n=100000 at fixed k).

var benchSizes = []int{10, 1_000, 100_000}

const benchValue = "10.0.0.1:7946"

// benchWriters returns w writer ids.
func benchWriters(w int) []string {
	ws := make([]string, w)
	for i := range ws {
		ws[i] = fmt.Sprintf("w%06d", i)
	}
	return ws
}

// benchDelta returns a delta of n writes to distinct keys by 8 writers at
// Lamport times 1..n, stalest first, as Map.Delta would produce it.
func benchDelta(n int) Delta[string, string] {
	ws := benchWriters(8)
	d := Delta[string, string]{Entries: make([]Entry[string, string], n), Covers: VersionVector{}}
	for i := range d.Entries {
		s := Stamp{Time: uint64(i + 1), Writer: ws[i%len(ws)]}
		d.Entries[i] = Entry[string, string]{Key: fmt.Sprintf("k%07d", i), Stamp: s, Value: benchValue}
		d.Covers.Observe(s.Writer, s.Time)
	}
	return d
}

// bump moves every write of d to a later time, so that each entry beats
// the one a previous ApplyDelta stored. It costs about 1 ns per entry.
func bump(d Delta[string, string], by uint64) {
	for i := range d.Entries {
		d.Entries[i].Stamp.Time += by
	}
	for w := range d.Covers {
		d.Covers[w] += by
	}
}

func mustApply(b *testing.B, m *Map[string, string], d Delta[string, string]) []Change[string, string] {
	ch, err := m.ApplyDelta(d)
	if err != nil {
		b.Fatal(err)
	}
	return ch
}

// BenchmarkMerge measures ApplyDelta of an n-entry delta:
//   - new: into an empty replica (a joiner), so the map grows to n keys;
//   - update: the replica holds every key at an older stamp, so every
//     entry wins and replaces one (the steady state of a busy cluster);
//   - unchanged: the replica already holds every entry (a duplicate or
//     retried delta); this path must allocate nothing.
func BenchmarkMerge(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("new/n=%d", n), func(b *testing.B) {
			d := benchDelta(n)
			b.ReportAllocs()
			for b.Loop() {
				var m Map[string, string]
				if ch := mustApply(b, &m, d); len(ch) != n {
					b.Fatalf("%d changes, want %d", len(ch), n)
				}
			}
		})
		b.Run(fmt.Sprintf("update/n=%d", n), func(b *testing.B) {
			d := benchDelta(n)
			var m Map[string, string]
			mustApply(b, &m, d)
			b.ReportAllocs()
			for b.Loop() {
				bump(d, uint64(n))
				if ch := mustApply(b, &m, d); len(ch) != n {
					b.Fatalf("%d changes, want %d", len(ch), n)
				}
			}
		})
		b.Run(fmt.Sprintf("unchanged/n=%d", n), func(b *testing.B) {
			d := benchDelta(n)
			var m Map[string, string]
			mustApply(b, &m, d)
			b.ReportAllocs()
			for b.Loop() {
				if ch := mustApply(b, &m, d); len(ch) != 0 {
					b.Fatalf("%d changes, want 0", len(ch))
				}
			}
		})
	}
}

// BenchmarkMergeDelta1000 is the target: a 1,000-entry delta
// merged in under 100 µs, in the costliest case (all keys new, so the
// receiver's maps grow from empty).
func BenchmarkMergeDelta1000(b *testing.B) {
	d := benchDelta(1000)
	b.ReportAllocs()
	for b.Loop() {
		var m Map[string, string]
		mustApply(b, &m, d)
	}
}

// deltaFixture builds a replica holding n keys written at Lamport times
// 1..n, round-robin over the given number of writers, and the vector of a
// partner that has all but the last k writes. writers == 8: few writers,
// each writing many keys; writers == n: each key has its own writer, as in
// membership, where every member writes only its own entry.
func deltaFixture(n, k, writers int) (*Map[string, string], VersionVector) {
	ws := benchWriters(writers)
	var m Map[string, string]
	pv := VersionVector{}
	for i := range n {
		s := Stamp{Time: uint64(i + 1), Writer: ws[i%len(ws)]}
		if _, err := m.Set(fmt.Sprintf("k%07d", i), benchValue, s); err != nil {
			panic(err)
		}
		if i < n-k {
			pv.Observe(s.Writer, s.Time)
		}
	}
	return &m, pv
}

// BenchmarkDelta measures Delta for a partner that lacks the newest k of n
// entries. With few writers the cost should stay nearly flat as n grows at
// fixed k (O(writers·log n + k log k)); with one writer per key Delta walks
// the whole version vector, so it is O(n) there.
func BenchmarkDelta(b *testing.B) {
	cases := []struct {
		name    string
		writers func(n int) int
	}{
		{"writers=8", func(int) int { return 8 }},
		{"writers=n", func(n int) int { return n }},
	}
	for _, c := range cases {
		for _, k := range []int{10, 1000} {
			for _, n := range benchSizes {
				if k > n {
					continue
				}
				b.Run(fmt.Sprintf("%s/k=%d/n=%d", c.name, k, n), func(b *testing.B) {
					m, pv := deltaFixture(n, k, c.writers(n))
					if got := len(m.Delta(pv, 0).Entries); got != k {
						b.Fatalf("delta has %d entries, want %d", got, k)
					}
					b.ReportAllocs()
					for b.Loop() {
						m.Delta(pv, 0)
					}
				})
			}
		}
	}
}

func benchVectors(w int) (VersionVector, VersionVector) {
	v, o := VersionVector{}, VersionVector{}
	for i, id := range benchWriters(w) {
		v[id] = uint64(i + 1)
		o[id] = uint64(i + 1)
	}
	return v, o
}

// BenchmarkVersionVectorCompare compares two equal vectors, the worst case
// (no early exit is possible).
func BenchmarkVersionVectorCompare(b *testing.B) {
	for _, w := range []int{10, 1000} {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			v, o := benchVectors(w)
			b.ReportAllocs()
			for b.Loop() {
				if v.Compare(o) != Equal {
					b.Fatal("vectors differ")
				}
			}
		})
	}
}

// BenchmarkVersionVectorMerge merges a vector the receiver already
// dominates: the steady state, which must not allocate.
func BenchmarkVersionVectorMerge(b *testing.B) {
	for _, w := range []int{10, 1000} {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			v, o := benchVectors(w)
			b.ReportAllocs()
			for b.Loop() {
				v.Merge(o)
			}
		})
	}
}

// BenchmarkCountersMerge merges heartbeat counters: "bump" where every
// count rose by one since the last merge (the common gossip round), and
// "unchanged" where none did.
func BenchmarkCountersMerge(b *testing.B) {
	for _, n := range []int{10, 1000} {
		keys := benchWriters(n)
		b.Run(fmt.Sprintf("bump/n=%d", n), func(b *testing.B) {
			var c, o Counters[string]
			for _, k := range keys {
				o.Bump(k)
			}
			c.Merge(&o)
			b.ReportAllocs()
			for b.Loop() {
				for _, k := range keys {
					o.Bump(k)
				}
				if up := c.Merge(&o); len(up) != n {
					b.Fatalf("%d rose, want %d", len(up), n)
				}
			}
		})
		b.Run(fmt.Sprintf("unchanged/n=%d", n), func(b *testing.B) {
			var c, o Counters[string]
			for _, k := range keys {
				o.Bump(k)
			}
			c.Merge(&o)
			b.ReportAllocs()
			for b.Loop() {
				if up := c.Merge(&o); len(up) != 0 {
					b.Fatalf("%d rose, want 0", len(up))
				}
			}
		})
	}
}
