package property_test

import (
	"testing"

	"pgregory.net/rapid"
)

// message is a delta (or a snapshot of a whole state) in flight.
type message struct {
	to   int
	d    delta
	full *smap // when set, a full-state merge instead of d
}

// network delivers messages in random order; it duplicates, drops and
// later retries them.
type network struct {
	rs       []*replica
	inflight []message
	dropped  []message
}

func (n *network) pick(t *rapid.T) int {
	return rapid.IntRange(0, len(n.inflight)-1).Draw(t, "msg")
}

func (n *network) deliver(t *rapid.T, k int) {
	msg := n.inflight[k]
	if msg.full != nil {
		n.rs[msg.to].merge(msg.full)
	} else {
		n.rs[msg.to].apply(t, msg.d)
	}
}

func (n *network) remove(k int) {
	n.inflight = append(n.inflight[:k], n.inflight[k+1:]...)
}

// TestConvergence: 2..5 replicas write, delete and exchange random deltas
// (cut or not) and snapshots; messages arrive in random order, some twice,
// some dropped and retried later. After every message is delivered and a
// final all-pairs exchange, all replicas hold identical states. Replicas
// also prune their vectors now and then, which must not hurt.
func TestConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := newReplicas(rapid.IntRange(2, 5).Draw(t, "replicas"))
		net := &network{rs: rs}
		replica := func(t *rapid.T, label string) int { return rapid.IntRange(0, len(rs)-1).Draw(t, label) }
		partners := func(t *rapid.T) (from, to int) {
			from = replica(t, "from")
			to = rapid.IntRange(0, len(rs)-2).Draw(t, "to")
			if to >= from {
				to++
			}
			return from, to
		}

		t.Repeat(map[string]func(*rapid.T){
			"set": func(t *rapid.T) {
				rs[replica(t, "r")].write(t, rapid.SampledFrom(keys).Draw(t, "key"), rapid.SampledFrom(values).Draw(t, "value"), false)
			},
			"delete": func(t *rapid.T) {
				rs[replica(t, "r")].write(t, rapid.SampledFrom(keys).Draw(t, "key"), "", true)
			},
			"sendDelta": func(t *rapid.T) {
				from, to := partners(t)
				limit := rapid.IntRange(0, 3).Draw(t, "limit")
				net.inflight = append(net.inflight, message{to: to, d: rs[from].m.Delta(rs[to].m.Version(), limit)})
			},
			"sendState": func(t *rapid.T) {
				from, to := partners(t)
				net.inflight = append(net.inflight, message{to: to, full: rs[from].m.Clone()})
			},
			"pruneVersion": func(t *rapid.T) {
				pruneVersion(t, rs[replica(t, "r")])
			},
			"deliver": func(t *rapid.T) {
				if len(net.inflight) == 0 {
					t.Skip("nothing in flight")
				}
				k := net.pick(t)
				net.deliver(t, k)
				if !rapid.Bool().Draw(t, "duplicate") {
					net.remove(k)
				}
			},
			"drop": func(t *rapid.T) {
				if len(net.inflight) == 0 {
					t.Skip("nothing in flight")
				}
				k := net.pick(t)
				net.dropped = append(net.dropped, net.inflight[k])
				net.remove(k)
			},
			"retry": func(t *rapid.T) {
				if len(net.dropped) == 0 {
					t.Skip("nothing dropped")
				}
				net.inflight = append(net.inflight, net.dropped...)
				net.dropped = nil
			},
			"": func(t *rapid.T) {
				for _, r := range rs {
					requireSane(t, r.id, r.m)
				}
			},
		})

		// Heal: every message still in flight or dropped arrives, in random order.
		net.inflight = append(net.inflight, net.dropped...)
		net.dropped = nil
		for len(net.inflight) > 0 {
			k := net.pick(t)
			net.deliver(t, k)
			net.remove(k)
		}
		exchangeUntilQuiet(t, rs, rapid.IntRange(0, 3).Draw(t, "finalLimit"))
		for _, r := range rs[1:] {
			requireSame(t, r.id+" vs "+rs[0].id, r.m, rs[0].m)
			requireSameVersion(t, r.id+" vs "+rs[0].id, r.m, rs[0].m)
		}
	})
}
