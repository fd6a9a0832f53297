package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gossipmesh/mesh/peer"
)

// The checkers follow each machine's membership through its events
// (TakeEvents after every call), as an application would, and compare it
// with the truth the simulator knows: which peers run, with which meta.
// Everything is incremental, so they run after every event at any size:
//
//	views[o][a]  what observer o holds for member a: the id of the meta it
//	             last saw, with removedBit once it removed a (0: never saw)
//	expected[a]  the id of a's current meta while a runs, else 0
//	mism[o]      members a ≠ o for which o's view differs from expected
//	holders[a]   live observers that hold a as a live member
//
// Converged ⇔ no live observer has mism > 0. The views cost 4 bytes per
// pair of peers: 100 MB at 5,000 peers, against the machines' own state
// of several hundred bytes per pair.
type checker struct {
	views       [][]uint32
	expected    []uint32
	mism        []int32
	holders     []int32
	live        []bool // observers: peers that are up
	liveCount   int
	unconverged int

	// per slot: the crash whose removal is being timed
	crashedAt    []int64
	droppedID    []uint32 // meta id of a down incarnation every live peer dropped
	removalTimes []time.Duration

	violations  []Violation
	nviolations int
}

const removedBit = 1 << 31

func present(v uint32) bool { return v != 0 && v&removedBit == 0 }

// matches reports whether view value v agrees with expected value e.
func matches(v, e uint32) bool {
	if present(v) {
		return v == e
	}
	return e == 0
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func (c *checker) grow(n int) {
	for len(c.expected) < n {
		c.expected = append(c.expected, 0)
		c.mism = append(c.mism, 0)
		c.holders = append(c.holders, 0)
		c.live = append(c.live, false)
		c.crashedAt = append(c.crashedAt, -1)
		c.droppedID = append(c.droppedID, 0)
		c.views = append(c.views, nil)
	}
	for i, row := range c.views {
		if row != nil && len(row) < n {
			c.views[i] = append(row, make([]uint32, n-len(row))...)
		}
	}
}

func (c *checker) addMism(o int32, d int32) {
	if d == 0 {
		return
	}
	before := c.mism[o]
	c.mism[o] += d
	if before == 0 && c.mism[o] > 0 {
		c.unconverged++
	} else if before > 0 && c.mism[o] == 0 {
		c.unconverged--
	}
}

// setExpected changes what every observer should hold for a: O(N).
func (c *checker) setExpected(s *Sim, a int32, e uint32) {
	old := c.expected[a]
	if old == e {
		return
	}
	c.expected[a] = e
	for o, row := range c.views {
		if !c.live[o] || int32(o) == a {
			continue
		}
		v := row[a]
		c.addMism(int32(o), b2i(!matches(v, e))-b2i(!matches(v, old)))
	}
}

// set records that observer o now holds v for a.
func (c *checker) set(s *Sim, o, a int32, v uint32) {
	row := c.views[o]
	old := row[a]
	if old == v {
		return
	}
	row[a] = v
	if present(old) != present(v) {
		if present(v) {
			c.holders[a]++
		} else {
			c.holders[a]--
			c.maybeDropped(s, a)
		}
	}
	e := c.expected[a]
	c.addMism(o, b2i(!matches(v, e))-b2i(!matches(old, e)))
}

// maybeDropped notes when every live peer has removed a down peer.
func (c *checker) maybeDropped(s *Sim, a int32) {
	n := s.nodes[a]
	if c.holders[a] != 0 || n.up {
		return
	}
	c.droppedID[a] = n.meta
	if c.crashedAt[a] >= 0 {
		c.removalTimes = append(c.removalTimes, time.Duration(s.now-c.crashedAt[a]))
		c.crashedAt[a] = -1
	}
}

// start makes slot a live observer with an empty view, expected to be
// seen with meta id.
func (c *checker) start(s *Sim, a int32, id uint32) {
	n := len(s.nodes)
	c.views[a] = make([]uint32, n)
	c.live[a] = true
	c.liveCount++
	c.crashedAt[a] = -1
	c.droppedID[a] = 0
	var m int32
	for b := range n {
		if int32(b) != a && c.expected[b] != 0 {
			m++
		}
	}
	c.mism[a] = 0
	c.addMism(a, m)
	c.setExpected(s, a, id)
}

// stop removes slot a as an observer and expects everyone to drop it;
// crashed starts timing its removal.
func (c *checker) stop(s *Sim, a int32, crashed bool) {
	row := c.views[a]
	c.addMism(a, -c.mism[a])
	c.live[a] = false
	c.liveCount--
	c.views[a] = nil
	for b, v := range row {
		if present(v) {
			c.holders[b]--
			c.maybeDropped(s, int32(b))
		}
	}
	if crashed {
		c.crashedAt[a] = s.now
	}
	c.setExpected(s, a, 0)
	c.maybeDropped(s, a)
}

// observe checks and applies one membership event of observer n.
func (c *checker) observe(s *Sim, n *node, ev peer.Event) {
	o := n.slot
	ai, ok := s.byAddr[ev.Addr]
	if !ok {
		c.violate(s, "unknown member", fmt.Sprintf("%s reports %v of %q, which no simulated peer ever had", n.addr, ev.Type, ev.Addr), o)
		return
	}
	if ai == o {
		c.violate(s, "self event", fmt.Sprintf("%s reports %v of itself", n.addr, ev.Type), o)
		return
	}
	a := s.nodes[ai]
	old := c.views[o][ai]
	switch ev.Type {
	case peer.EventJoin, peer.EventUpdate:
		id, ok := metaID(ev.Meta)
		if !ok {
			c.violate(s, "meta", fmt.Sprintf("%s reports %v of %s with meta %q, which the simulator never set", n.addr, ev.Type, a.addr, ev.Meta.GetName()), o, ai)
			return
		}
		kind := recJoin
		if ev.Type == peer.EventUpdate {
			kind = recUpdate
		}
		s.tr.add(rec{at: s.now, kind: kind, a: o, b: ai, x: uint64(id)})
		if last := old &^ removedBit; id < last {
			c.violate(s, "stale meta", fmt.Sprintf("%s replaced meta #%d of %s by the older #%d: an old write (or incarnation) won", n.addr, last, a.addr, id), o, ai)
		}
		if !a.up {
			if old&removedBit != 0 && id <= old&^removedBit {
				s.stats.Zombies++
				c.violate(s, "zombie", fmt.Sprintf("%s had removed %s, which is down, and now sees it live again (meta #%d)", n.addr, a.addr, id), o, ai)
			} else if c.droppedID[ai] != 0 && id <= c.droppedID[ai] {
				s.stats.Zombies++
				c.violate(s, "zombie", fmt.Sprintf("every live peer had removed %s, which is down, and now %s sees it live again (meta #%d)", a.addr, n.addr, id), o, ai)
			}
		}
		c.set(s, o, ai, id)
	case peer.EventLeave, peer.EventFailed:
		declared := ev.Type == peer.EventFailed && ev.Decided
		if ev.Type == peer.EventLeave {
			s.tr.add(rec{at: s.now, kind: recLeave, a: o, b: ai})
		} else {
			s.tr.add(rec{at: s.now, kind: recFailed, a: o, b: ai, x: b2u(declared)})
		}
		if declared {
			s.stats.Declarations++
		}
		if ev.Type == peer.EventFailed {
			// Every peer decides on the alerts it holds, so every removal
			// is checked, not only the declarer's.
			c.checkRemoval(s, n, a)
		}
		if ev.Type == peer.EventLeave && !a.everLeft {
			c.violate(s, "false leave", fmt.Sprintf("%s sees %s leave, but no incarnation of it ever left", n.addr, a.addr), o, ai)
		}
		if old == 0 {
			old = 1 // removed before seen: keep the removed mark
		}
		c.set(s, o, ai, old|removedBit)
	}
}

// checkRemoval decides whether observer n's removal of a (FAILED) is a
// false removal: a is running and no fault excuses it. Excuses, within
// n's Expiry (for its view size, when Expiry is left to the default) +
// RPCTimeout + 2 periods before now: a (re)started, stalled or was
// unreachable; n stalled; a partition cut a off from some peers. A
// removal is the cluster's verdict, not n's: where a's observers across
// a partition alerted, n removes a too, even on a's side.
func (c *checker) checkRemoval(s *Sim, n, a *node) {
	if !a.up {
		return
	}
	s.stats.Removals++
	window := s.now - (int64(n.m.Expiry()) + s.rpcTimeout + 2*s.period)
	if a.restarted >= window || a.stalled >= window || n.stalled >= window || a.unreachable || a.reachableAt >= window ||
		s.net.cutOffSince(a.slot, window) {
		return
	}
	s.stats.FalseRemovals++
	if s.cfg.AllowFalseRemovals {
		return
	}
	c.violate(s, "false removal", fmt.Sprintf("%s declared %s failed, but it runs (up since %.1fP) and no partition or stall cut them in the last %v",
		n.addr, a.addr, float64(a.started)/float64(s.period), time.Duration(s.now-window)), n.slot, a.slot)
}

// crashDeadline checks that a crashed incarnation was removed by all.
func (c *checker) crashDeadline(s *Sim, n *node, inc uint32) {
	if n.inc != inc || n.up || c.holders[n.slot] == 0 {
		return
	}
	var who []string
	var slots = []int32{n.slot}
	for o, row := range c.views {
		if c.live[o] && present(row[n.slot]) {
			who = append(who, s.nodes[o].addr)
			if len(slots) < 3 {
				slots = append(slots, int32(o))
			}
		}
	}
	c.violate(s, "crash detection", fmt.Sprintf("%s crashed %v ago and %d live peers still list it, e.g. %s",
		n.addr, s.cfg.CrashBound, len(who), strings.Join(who[:min(3, len(who))], ", ")), slots...)
}

func (c *checker) violate(s *Sim, check, msg string, slots ...int32) {
	c.nviolations++
	if len(c.violations) >= 50 {
		return
	}
	c.violations = append(c.violations, Violation{At: time.Duration(s.now), Check: check, Msg: msg, Trace: s.tr.recent(s, slots, 40)})
}

func (c *checker) unconvergedSlots(s *Sim, k int) []int32 {
	var out []int32
	for o := range c.views {
		if c.live[o] && c.mism[o] > 0 {
			out = append(out, int32(o))
			if len(out) == k {
				break
			}
		}
	}
	return out
}

// describeUnconverged names, for the first few unconverged observers,
// members they hold wrongly.
func (c *checker) describeUnconverged(s *Sim) string {
	var b strings.Builder
	for _, o := range c.unconvergedSlots(s, 3) {
		fmt.Fprintf(&b, "\n    %s differs on %d members:", s.nodes[o].addr, c.mism[o])
		k := 0
		for a, v := range c.views[o] {
			if int32(a) == o || matches(v, c.expected[a]) {
				continue
			}
			if k++; k > 4 {
				b.WriteString(" ...")
				break
			}
			fmt.Fprintf(&b, " %s holds %s, truth %s;", s.nodes[a].addr, viewString(v), viewString(c.expected[a]))
		}
	}
	return b.String()
}

func viewString(v uint32) string {
	switch {
	case v == 0:
		return "absent"
	case !present(v):
		return fmt.Sprintf("removed (last meta #%d)", v&^removedBit)
	}
	return fmt.Sprintf("live meta #%d", v)
}

// verifyMembers compares Members() of up to sample live peers (0: all)
// with the checker's views and with the truth, so that a bug in event
// emission cannot hide a wrong state.
func (c *checker) verifyMembers(s *Sim, sample int) {
	var live []*node
	for _, n := range s.nodes {
		if n.up {
			live = append(live, n)
		}
	}
	step := 1
	if sample > 0 && len(live) > sample {
		step = (len(live) + sample - 1) / sample
	}
	for i := 0; i < len(live); i += step {
		n := live[i]
		got := n.m.Members()
		var bad []string
		for addr, meta := range got {
			ai, ok := s.byAddr[addr]
			if !ok {
				bad = append(bad, addr+" unknown")
				continue
			}
			id, _ := metaID(meta)
			if a := s.nodes[ai]; !a.up || a.meta != id {
				bad = append(bad, fmt.Sprintf("%s meta #%d (truth: %s)", addr, id, viewString(c.expected[ai])))
			}
			if ai != n.slot && c.views[n.slot][ai] != id {
				bad = append(bad, fmt.Sprintf("%s meta #%d but its events said %s", addr, id, viewString(c.views[n.slot][ai])))
			}
		}
		for _, a := range live {
			if _, ok := got[a.addr]; !ok {
				bad = append(bad, a.addr+" missing")
			}
		}
		if len(bad) > 0 {
			slices.Sort(bad)
			c.violate(s, "members", fmt.Sprintf("%s: Members() differs from the live membership: %s", n.addr, strings.Join(bad[:min(5, len(bad))], "; ")), n.slot)
		}
	}
}

// MetaStaleness returns the mean and maximum, over every pair of distinct
// live peers (observer, member), of how out of date the observer's view of
// the member is: 0 when it holds the member's current meta, else the time
// since the member set the first meta the observer lacks. It costs O(N²).
func (s *Sim) MetaStaleness() (mean, worst time.Duration) {
	var sum float64
	var pairs int
	for _, o := range s.nodes {
		if !o.up {
			continue
		}
		row := s.chk.views[o.slot]
		for _, a := range s.nodes {
			if !a.up || a.slot == o.slot {
				continue
			}
			pairs++
			v := row[a.slot]
			if present(v) && v == a.meta {
				continue
			}
			held := v &^ removedBit
			i, _ := slices.BinarySearch(a.metas, held+1)
			if i == len(a.metas) {
				continue // holds something newer than the truth: reported elsewhere
			}
			age := time.Duration(s.now - s.metaBorn[a.metas[i]])
			sum += float64(age)
			worst = max(worst, age)
		}
	}
	if pairs == 0 {
		return 0, 0
	}
	return time.Duration(sum / float64(pairs)), worst
}
