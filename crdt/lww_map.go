package crdt

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"slices"
)

// Entry is one write to a [Map]: Value under Key at Stamp, or a tombstone
// when Deleted. A tombstone may still carry a Value (mesh records why a
// member was removed in it); it is never returned as live.
type Entry[K cmp.Ordered, V any] struct {
	Key     K
	Stamp   Stamp
	Value   V
	Deleted bool
}

// Change is one key whose winning entry changed in a merge. Old is the
// zero Entry when the key was absent before (HadOld false).
type Change[K cmp.Ordered, V any] struct {
	Old, New Entry[K, V]
	HadOld   bool
}

// Delta is what one replica sends another: writes the partner lacks, and
// the version vector the partner may claim once it has applied them.
type Delta[K cmp.Ordered, V any] struct {
	Entries []Entry[K, V]
	Covers  VersionVector
	// Cut is non-zero when the delta was cut short: it holds every write
	// the partner lacked up to this Lamport time, and Covers is capped at it.
	Cut uint64
}

// Map is a last-writer-wins map from K to V with tombstones. The zero value
// is an empty map ready to use. A Map is not safe for concurrent use.
type Map[K cmp.Ordered, V any] struct {
	entries map[K]Entry[K, V]
	live    int
	version VersionVector
	floor   uint64
	// logs index entries by writer and time so that Delta costs
	// O(writers + k log n) for k missing entries instead of a scan of all n.
	logs map[string]*writerLog[K]
}

// writerLog lists (time, key) of one writer's stored writes, sorted by
// time. Overwritten items are left in place and skipped (lazy deletion);
// the log is compacted once they are the majority.
type writerLog[K cmp.Ordered] struct {
	items []logItem[K]
	stale int
}

type logItem[K cmp.Ordered] struct {
	time uint64
	key  K
}

func (m *Map[K, V]) init() {
	if m.entries == nil {
		m.entries = make(map[K]Entry[K, V])
		m.version = VersionVector{}
		m.logs = make(map[string]*writerLog[K])
	}
}

// Len returns the number of live (not deleted) keys.
func (m *Map[K, V]) Len() int { return m.live }

// Get returns the live value of key.
func (m *Map[K, V]) Get(key K) (V, bool) {
	e, ok := m.entries[key]
	if !ok || e.Deleted {
		var zero V
		return zero, false
	}
	return e.Value, true
}

// Lookup returns the winning entry of key, tombstone or not.
func (m *Map[K, V]) Lookup(key K) (Entry[K, V], bool) {
	e, ok := m.entries[key]
	return e, ok
}

// Live iterates over live keys and values in no particular order.
func (m *Map[K, V]) Live() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k, e := range m.entries {
			if !e.Deleted && !yield(k, e.Value) {
				return
			}
		}
	}
}

// All iterates over every stored entry, tombstones included.
func (m *Map[K, V]) All() iter.Seq[Entry[K, V]] {
	return func(yield func(Entry[K, V]) bool) {
		for _, e := range m.entries {
			if !yield(e) {
				return
			}
		}
	}
}

// Version returns a copy of the map's version vector.
func (m *Map[K, V]) Version() VersionVector { return m.version.Clone() }

// Floor returns the highest Lamport time of any purged tombstone (0 if none).
func (m *Map[K, V]) Floor() uint64 { return m.floor }

// Set writes value under key at stamp s. It reports whether the write won
// (it loses to an entry with a greater or equal stamp). An invalid stamp
// or key is an error and changes nothing.
func (m *Map[K, V]) Set(key K, value V, s Stamp) (bool, error) {
	return m.Apply(Entry[K, V]{Key: key, Stamp: s, Value: value})
}

// Delete writes a tombstone for key at stamp s; see Set.
func (m *Map[K, V]) Delete(key K, s Stamp) (bool, error) {
	return m.Apply(Entry[K, V]{Key: key, Stamp: s, Deleted: true})
}

// Apply merges a single entry; see Set. Apply records e.Stamp in the version
// vector, so use it for the replica's own writes, which it makes in order;
// writes from others arrive through ApplyDelta or Merge.
func (m *Map[K, V]) Apply(e Entry[K, V]) (bool, error) {
	_, changed, err := m.Put(e)
	return changed, err
}

// Put is Apply that also returns the change, for callers that derive
// state (events, digests) from it.
func (m *Map[K, V]) Put(e Entry[K, V]) (Change[K, V], bool, error) {
	if err := validEntry(e); err != nil {
		return Change[K, V]{}, false, err
	}
	c, changed := m.put(e)
	return c, changed, nil
}

// ErrInvalidEntry wraps every rejection of bad input.
var ErrInvalidEntry = errors.New("crdt: invalid entry")

func validEntry[K cmp.Ordered, V any](e Entry[K, V]) error {
	var zero K
	if e.Key == zero {
		return fmt.Errorf("%w: empty key at stamp %v", ErrInvalidEntry, e.Stamp)
	}
	if err := e.Stamp.validate(); err != nil {
		return fmt.Errorf("%w: key %v: %v", ErrInvalidEntry, e.Key, err)
	}
	return nil
}

// put stores e if it beats what is there; callers validated it.
func (m *Map[K, V]) put(e Entry[K, V]) (Change[K, V], bool) {
	m.init()
	old, had := m.entries[e.Key]
	if had && e.Stamp == old.Stamp {
		// Already held, so already observed (the vector never drops
		// below a stored stamp): a duplicate costs one lookup.
		return Change[K, V]{}, false
	}
	m.version.Observe(e.Stamp.Writer, e.Stamp.Time)
	if had && e.Stamp.Compare(old.Stamp) <= 0 {
		return Change[K, V]{}, false
	}
	if !had && e.Stamp.Time <= m.floor {
		// Older than a purged tombstone: it might be the write that
		// tombstone deleted, so it must not come back.
		return Change[K, V]{}, false
	}
	if had && !old.Deleted {
		m.live--
	}
	if !e.Deleted {
		m.live++
	}
	m.entries[e.Key] = e
	lg := m.logs[e.Stamp.Writer]
	if lg == nil {
		lg = &writerLog[K]{}
		m.logs[e.Stamp.Writer] = lg
	}
	lg.add(logItem[K]{e.Stamp.Time, e.Key})
	if had {
		// After the store and the new item, so that compaction sees both.
		m.unlog(old.Stamp.Writer)
	}
	return Change[K, V]{Old: old, New: e, HadOld: had}, true
}

func (l *writerLog[K]) add(it logItem[K]) {
	n := len(l.items)
	if n == 0 || l.items[n-1].time <= it.time {
		l.items = append(l.items, it)
		return
	}
	i, _ := slices.BinarySearchFunc(l.items, it.time, func(x logItem[K], t uint64) int { return cmp.Compare(x.time, t) })
	l.items = slices.Insert(l.items, i, it)
}

// unlog accounts for one item of writer's log being overwritten or purged,
// and compacts the log once most of it is stale.
func (m *Map[K, V]) unlog(writer string) {
	l := m.logs[writer]
	l.stale++
	if l.stale*2 <= len(l.items) {
		return
	}
	l.items = slices.DeleteFunc(l.items, func(it logItem[K]) bool { return !m.holds(it, writer) })
	l.stale = 0
	if len(l.items) == 0 {
		delete(m.logs, writer)
	}
}

// PruneVersion drops from the version vector every writer of which the
// map holds no entry, and returns how many it dropped. Without it vectors
// grow with every writer that ever existed (mesh has one per peer
// incarnation). Like Purge it is a local decision outside the merge laws;
// it is safe because claiming less is: a write of a dropped writer sent
// again is dominated by what replaced it, or below the floor if that was
// purged. It costs O(writers).
func (m *Map[K, V]) PruneVersion() int {
	n := 0
	for w := range m.version {
		if lg := m.logs[w]; lg == nil || lg.stale == len(lg.items) {
			delete(m.version, w)
			delete(m.logs, w)
			n++
		}
	}
	return n
}

// holds reports whether a log item is still the key's winning entry.
func (m *Map[K, V]) holds(it logItem[K], writer string) bool {
	e, ok := m.entries[it.key]
	return ok && e.Stamp.Time == it.time && e.Stamp.Writer == writer
}

// Delta returns the entries a partner whose version vector is pv lacks,
// stalest first. With limit > 0 it returns at most about limit entries,
// cut at a Lamport time T so that every missing write up to T is included
// and none above; Covers then claims no more than T. (If more than limit
// entries share the lowest time, they are all included so the partner
// always makes progress.)
func (m *Map[K, V]) Delta(pv VersionVector, limit int) Delta[K, V] {
	var out []Entry[K, V]
	// Covers lists only the writers the partner lags on: merging it into
	// pv gives the same vector as merging all of ours, at O(lagging) size.
	covers := VersionVector{}
	for w, t := range m.version {
		since := pv[w]
		if t <= since {
			continue
		}
		covers[w] = t
		lg := m.logs[w]
		if lg == nil {
			continue
		}
		i, _ := slices.BinarySearchFunc(lg.items, since+1, func(x logItem[K], t uint64) int { return cmp.Compare(x.time, t) })
		for _, it := range lg.items[i:] {
			// holds, fused with the fetch: one lookup per item.
			if e, ok := m.entries[it.key]; ok && e.Stamp.Time == it.time && e.Stamp.Writer == w {
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b Entry[K, V]) int { return a.Stamp.Compare(b.Stamp) })
	if limit <= 0 || len(out) <= limit {
		return Delta[K, V]{Entries: out, Covers: covers}
	}
	cut := out[limit].Stamp.Time - 1 // the first excluded time, minus one
	n := limit
	for n > 0 && out[n-1].Stamp.Time > cut {
		n--
	}
	if n == 0 { // the whole prefix shares one time: take all of that time
		cut = out[0].Stamp.Time
		for n < len(out) && out[n].Stamp.Time == cut {
			n++
		}
	}
	return Delta[K, V]{Entries: out[:n:n], Covers: covers.Capped(cut), Cut: cut}
}

// ApplyDelta merges a delta from a partner and raises the version vector to
// d.Covers. It validates every entry first: on error nothing is changed.
// It returns the keys whose winning entry changed, in the delta's order,
// allocating nothing when none did.
func (m *Map[K, V]) ApplyDelta(d Delta[K, V]) ([]Change[K, V], error) {
	for _, e := range d.Entries {
		if err := validEntry(e); err != nil {
			return nil, err
		}
	}
	for w, t := range d.Covers {
		if w == "" || t > MaxTime {
			return nil, fmt.Errorf("%w: version vector entry %q=%d", ErrInvalidEntry, w, t)
		}
	}
	if len(d.Entries) > len(m.entries) {
		// A joiner's first deltas are most of the state, and its map holds
		// little (its own entry): size the maps for them instead of growing
		// them step by step, rehashing at every doubling. A delta larger
		// than the map bounds the copy, so this costs O(len(d.Entries)).
		m.grow(len(d.Entries))
	}
	var changes []Change[K, V]
	for i, e := range d.Entries {
		if c, ok := m.put(e); ok {
			if changes == nil {
				// A delta holds what the vector says we lack, so most
				// entries after the first winner win too: size for them.
				changes = make([]Change[K, V], 0, len(d.Entries)-i)
			}
			changes = append(changes, c)
		}
	}
	if len(d.Covers) > 0 {
		m.init()
		m.version.Merge(d.Covers)
	}
	return changes, nil
}

// grow makes room for n more entries (and as many more writers).
func (m *Map[K, V]) grow(n int) {
	entries := make(map[K]Entry[K, V], len(m.entries)+n)
	for k, e := range m.entries {
		entries[k] = e
	}
	m.entries = entries
	version := make(VersionVector, len(m.version)+n)
	for w, t := range m.version {
		version[w] = t
	}
	m.version = version
	logs := make(map[string]*writerLog[K], len(m.logs)+n)
	for w, lg := range m.logs {
		logs[w] = lg
	}
	m.logs = logs
}

// Merge merges the whole state of o into m (o is not modified): the join
// the merge laws speak of. It is ApplyDelta with everything o has.
func (m *Map[K, V]) Merge(o *Map[K, V]) []Change[K, V] {
	var changes []Change[K, V]
	for _, e := range o.entries {
		if c, ok := m.put(e); ok {
			changes = append(changes, c)
		}
	}
	if o.version != nil {
		m.init()
		m.version.Merge(o.version)
	}
	return changes
}

// Purge removes the tombstones for which drop returns true and returns how
// many it removed. It raises the floor (see the package doc) to the
// highest Lamport time among them.
func (m *Map[K, V]) Purge(drop func(Entry[K, V]) bool) int {
	n := 0
	for k, e := range m.entries {
		if !e.Deleted || !drop(e) {
			continue
		}
		delete(m.entries, k)
		m.floor = max(m.floor, e.Stamp.Time)
		m.unlog(e.Stamp.Writer)
		n++
	}
	return n
}

// Clone returns an independent copy of m. Values are copied shallowly.
func (m *Map[K, V]) Clone() *Map[K, V] {
	c := &Map[K, V]{live: m.live, floor: m.floor}
	c.init()
	for k, e := range m.entries {
		c.entries[k] = e
	}
	c.version = m.version.Clone()
	for w, lg := range m.logs {
		c.logs[w] = &writerLog[K]{items: slices.Clone(lg.items), stale: lg.stale}
	}
	return c
}

// Equal reports whether m and o hold the same entries (by key and stamp;
// values are not compared: a stamp names one write).
func (m *Map[K, V]) Equal(o *Map[K, V]) bool {
	if len(m.entries) != len(o.entries) {
		return false
	}
	for k, e := range m.entries {
		oe, ok := o.entries[k]
		if !ok || oe.Stamp != e.Stamp || oe.Deleted != e.Deleted {
			return false
		}
	}
	return true
}
