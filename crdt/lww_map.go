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
//
// Its layout is chosen for memory: mesh keeps a Map per peer with an entry
// per member, and a simulator thousands of them. Entries sit in a slice
// (slots), found by key through a hashIndex; writer ids are interned once,
// and each writer's vector time and log share one record (ws), found by
// id through another. A slot names its writer by position, so an entry
// costs one string header less, and the collector fewer pointers to
// follow.
type Map[K cmp.Ordered, V any] struct {
	keys  hashIndex // key → position in slots
	slots []slot[K, V]
	free  []int32 // positions of purged slots, reused first
	live  int
	floor uint64
	wids  hashIndex // writer id → position in ws
	ws    []writerState
	wfree []int32 // positions of pruned writers, reused first
}

// slot holds one key's winning entry. writer < 0 marks a free slot.
type slot[K cmp.Ordered, V any] struct {
	key     K
	value   V
	time    uint64
	writer  int32
	deleted bool
}

// writerState is one writer's version-vector time and log. A writer whose
// id is empty is a free record.
type writerState struct {
	id string
	// time is the writer's entry in the version vector: the highest time
	// of its writes accounted for (never 0 for a writer in use).
	time uint64
	// log lists (time, slot) of the writer's stored writes, sorted by
	// time, so that Delta costs O(writers + k log n) for k missing
	// entries instead of a scan of all n. Overwritten items are left in
	// place and skipped (lazy deletion); the log is compacted once they
	// are the majority.
	log   []logItem
	stale int32
}

// logItem names a write by its time and its key's slot. An item is held
// when the slot is in use with that time and writer. A slot freed by Purge
// and reused can never match a stale item of its former key: the purge
// raised the floor to at least that item's time, and a key that is not
// held is only stored above the floor.
type logItem struct {
	time uint64
	slot int32
}

// findKey returns key's slot, or -1.
func (m *Map[K, V]) findKey(key K) int32 {
	return m.keys.find(hashOf(key), func(i int32) bool { return m.slots[i].key == key })
}

func (m *Map[K, V]) keyHash(i int32) uint64 { return hashOf(m.slots[i].key) }

// findWriter returns the position of writer in ws, or -1.
func (m *Map[K, V]) findWriter(writer string) int32 {
	return m.wids.find(hashOf(writer), func(w int32) bool { return m.ws[w].id == writer })
}

func (m *Map[K, V]) writerHash(w int32) uint64 { return hashOf(m.ws[w].id) }

// entry returns the entry in slot i.
func (m *Map[K, V]) entry(i int32) Entry[K, V] {
	sl := &m.slots[i]
	return Entry[K, V]{Key: sl.key, Stamp: Stamp{Time: sl.time, Writer: m.ws[sl.writer].id}, Value: sl.value, Deleted: sl.deleted}
}

// Len returns the number of live (not deleted) keys.
func (m *Map[K, V]) Len() int { return m.live }

// Get returns the live value of key.
func (m *Map[K, V]) Get(key K) (V, bool) {
	i := m.findKey(key)
	if i < 0 || m.slots[i].deleted {
		var zero V
		return zero, false
	}
	return m.slots[i].value, true
}

// Lookup returns the winning entry of key, tombstone or not.
func (m *Map[K, V]) Lookup(key K) (Entry[K, V], bool) {
	i := m.findKey(key)
	if i < 0 {
		return Entry[K, V]{}, false
	}
	return m.entry(i), true
}

// Live iterates over live keys and values in no particular order.
func (m *Map[K, V]) Live() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for i := range m.slots {
			sl := &m.slots[i]
			if sl.writer >= 0 && !sl.deleted && !yield(sl.key, sl.value) {
				return
			}
		}
	}
}

// All iterates over every stored entry, tombstones included.
func (m *Map[K, V]) All() iter.Seq[Entry[K, V]] {
	return func(yield func(Entry[K, V]) bool) {
		for i := range m.slots {
			if m.slots[i].writer >= 0 && !yield(m.entry(int32(i))) {
				return
			}
		}
	}
}

// Version returns a copy of the map's version vector.
func (m *Map[K, V]) Version() VersionVector {
	v := make(VersionVector, m.wids.n)
	for i := range m.ws {
		if w := &m.ws[i]; w.id != "" {
			v[w.id] = w.time
		}
	}
	return v
}

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
	h := hashOf(e.Key)
	i := m.keys.find(h, func(i int32) bool { return m.slots[i].key == e.Key })
	had := i >= 0
	var old Entry[K, V]
	if had {
		old = m.entry(i)
		if e.Stamp == old.Stamp {
			// Already held, so already observed (the vector never drops
			// below a stored stamp): a duplicate costs one lookup.
			return Change[K, V]{}, false
		}
	}
	w := m.observe(e.Stamp.Writer, e.Stamp.Time)
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
	oldWriter := int32(-1)
	if had {
		oldWriter = m.slots[i].writer
	} else {
		i = m.newSlot()
		m.slots[i].key = e.Key // for keyHash, should insert resize
		m.keys.insert(h, i, m.keyHash)
	}
	m.slots[i] = slot[K, V]{key: e.Key, value: e.Value, time: e.Stamp.Time, writer: w, deleted: e.Deleted}
	m.ws[w].add(logItem{e.Stamp.Time, i})
	if had {
		// After the store and the new item, so that compaction sees both.
		m.unlog(oldWriter)
	}
	return Change[K, V]{Old: old, New: e, HadOld: had}, true
}

// newSlot returns a free slot's position.
func (m *Map[K, V]) newSlot() int32 {
	if n := len(m.free); n > 0 {
		i := m.free[n-1]
		m.free = m.free[:n-1]
		return i
	}
	m.slots = append(m.slots, slot[K, V]{writer: -1})
	return int32(len(m.slots) - 1)
}

// observe raises writer's vector time to t, interning the writer, and
// returns its position in ws.
func (m *Map[K, V]) observe(writer string, t uint64) int32 {
	h := hashOf(writer)
	w := m.wids.find(h, func(w int32) bool { return m.ws[w].id == writer })
	if w < 0 {
		if n := len(m.wfree); n > 0 {
			w = m.wfree[n-1]
			m.wfree = m.wfree[:n-1]
		} else {
			m.ws = append(m.ws, writerState{})
			w = int32(len(m.ws) - 1)
		}
		m.ws[w] = writerState{id: writer}
		m.wids.insert(h, w, m.writerHash)
	}
	if ws := &m.ws[w]; t > ws.time {
		ws.time = t
	}
	return w
}

func (l *writerState) add(it logItem) {
	n := len(l.log)
	if n == 0 || l.log[n-1].time <= it.time {
		l.log = append(l.log, it)
		return
	}
	i, _ := slices.BinarySearchFunc(l.log, it.time, func(x logItem, t uint64) int { return cmp.Compare(x.time, t) })
	l.log = slices.Insert(l.log, i, it)
}

// unlog accounts for one item of writer w's log being overwritten or
// purged, and compacts the log once most of it is stale.
func (m *Map[K, V]) unlog(w int32) {
	l := &m.ws[w]
	l.stale++
	if int(l.stale)*2 <= len(l.log) {
		return
	}
	l.log = slices.DeleteFunc(l.log, func(it logItem) bool { return !m.holds(it, w) })
	l.stale = 0
	if len(l.log) == 0 {
		l.log = nil
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
	for i := range m.ws {
		w := &m.ws[i]
		if w.id != "" && int(w.stale) == len(w.log) {
			m.wids.remove(hashOf(w.id), int32(i), m.writerHash)
			*w = writerState{}
			m.wfree = append(m.wfree, int32(i))
			n++
		}
	}
	return n
}

// holds reports whether a log item of writer w is still its key's
// winning entry.
func (m *Map[K, V]) holds(it logItem, w int32) bool {
	sl := &m.slots[it.slot]
	return sl.writer == w && sl.time == it.time
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
	for wi := range m.ws {
		w := &m.ws[wi]
		if w.id == "" {
			continue
		}
		since := pv[w.id]
		if w.time <= since {
			continue
		}
		covers[w.id] = w.time
		i, _ := slices.BinarySearchFunc(w.log, since+1, func(x logItem, t uint64) int { return cmp.Compare(x.time, t) })
		for _, it := range w.log[i:] {
			if m.holds(it, int32(wi)) {
				out = append(out, m.entry(it.slot))
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
	return m.AppendDelta(nil, d)
}

// AppendDelta is ApplyDelta appending the changes to changes, which it
// returns (nil on error): a caller that applies many deltas can reuse
// one buffer instead of allocating one a delta.
func (m *Map[K, V]) AppendDelta(changes []Change[K, V], d Delta[K, V]) ([]Change[K, V], error) {
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
	if len(d.Entries) > m.keys.n {
		// A joiner's first deltas are most of the state, and its map holds
		// little (its own entry): size the maps for them instead of growing
		// them step by step, rehashing at every doubling. A delta larger
		// than the map bounds the copy, so this costs O(len(d.Entries)).
		m.grow(len(d.Entries))
	}
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
		for w, t := range d.Covers {
			if t > 0 { // as VersionVector.Merge: a zero time claims nothing
				m.observe(w, t)
			}
		}
	}
	return changes, nil
}

// grow makes room for n more entries (and as many more writers).
func (m *Map[K, V]) grow(n int) {
	m.keys.reserve(m.keys.n+n, m.keyHash)
	m.slots = slices.Grow(m.slots, n)
	m.wids.reserve(m.wids.n+n, m.writerHash)
	m.ws = slices.Grow(m.ws, n)
}

// Merge merges the whole state of o into m (o is not modified): the join
// the merge laws speak of. It is ApplyDelta with everything o has.
func (m *Map[K, V]) Merge(o *Map[K, V]) []Change[K, V] {
	var changes []Change[K, V]
	for i := range o.slots {
		if o.slots[i].writer < 0 {
			continue
		}
		if c, ok := m.put(o.entry(int32(i))); ok {
			changes = append(changes, c)
		}
	}
	for i := range o.ws {
		if w := &o.ws[i]; w.id != "" {
			m.observe(w.id, w.time)
		}
	}
	return changes
}

// Purge removes the tombstones for which drop returns true and returns how
// many it removed. It raises the floor (see the package doc) to the
// highest Lamport time among them.
func (m *Map[K, V]) Purge(drop func(Entry[K, V]) bool) int {
	n := 0
	for i := range m.slots {
		sl := &m.slots[i]
		if sl.writer < 0 || !sl.deleted {
			continue
		}
		e := m.entry(int32(i))
		if !drop(e) {
			continue
		}
		m.keys.remove(hashOf(e.Key), int32(i), m.keyHash)
		w := sl.writer
		*sl = slot[K, V]{writer: -1} // drops its references for the collector
		m.free = append(m.free, int32(i))
		m.floor = max(m.floor, e.Stamp.Time)
		m.unlog(w)
		n++
	}
	return n
}

// Clone returns an independent copy of m. Values are copied shallowly.
func (m *Map[K, V]) Clone() *Map[K, V] {
	c := &Map[K, V]{
		keys: m.keys.clone(), slots: slices.Clone(m.slots), free: slices.Clone(m.free),
		live: m.live, floor: m.floor,
		wids: m.wids.clone(), ws: slices.Clone(m.ws), wfree: slices.Clone(m.wfree),
	}
	for i := range c.ws {
		c.ws[i].log = slices.Clone(c.ws[i].log)
	}
	return c
}

// Equal reports whether m and o hold the same entries (by key and stamp;
// values are not compared: a stamp names one write).
func (m *Map[K, V]) Equal(o *Map[K, V]) bool {
	if m.keys.n != o.keys.n {
		return false
	}
	for i := range m.slots {
		a := &m.slots[i]
		if a.writer < 0 {
			continue
		}
		j := o.findKey(a.key)
		if j < 0 {
			return false
		}
		b := &o.slots[j]
		if a.time != b.time || a.deleted != b.deleted || m.ws[a.writer].id != o.ws[b.writer].id {
			return false
		}
	}
	return true
}
