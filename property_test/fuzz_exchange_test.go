package property_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// FuzzExchange feeds arbitrary bytes, decoded as a SyncRequest, to the
// exchange handler (peer.Machine.Answer, what the gRPC handler calls) of a
// machine that holds live members, a left one and a failed one. It checks
// that nothing panics; that a refused request leaves the machine exactly
// as it was (digest, members, entries, counters); and that an accepted
// one yields a well-formed answer, is harmless when delivered again, and
// leaves a machine that still runs its rounds.
//
// Limits are small (8 members, 4 entries per delta, 256-byte metas) so
// that the fuzzer reaches them.
func FuzzExchange(f *testing.F) {
	m, _ := exchangeMachine(f)
	self := m.Addr()
	digest := m.Digest()
	holders := make([]byte, (len(m.Members())+7)/8)
	alive := func(addr string, t uint64, name string) *meshpb.Entry {
		return &meshpb.Entry{Addr: addr, Time: t, Writer: addr + "#0000beef", Meta: &meshpb.PeerMeta{Name: name}}
	}
	failed := func(addr string, t uint64) *meshpb.Entry {
		return &meshpb.Entry{Addr: addr, Time: t, Writer: "10.0.0.9:7946#00000001", State: meshpb.State_STATE_FAILED}
	}
	seeds := []*meshpb.SyncRequest{
		{},
		{Digest: digest, AllHold: true},    // steady state
		{Digest: digest, Holders: holders}, // holders being collected
		{Digest: digest, Holders: append(holders, 0xff, 0xff)}, // holders of another view
		{Digest: digest + 1, From: "10.0.0.9:1"},               // first step of a differing exchange
		{ // second step: a new member, a tombstone for this peer (refuted)
			Full: true, From: "10.0.0.9:7946", Clock: 40,
			Version: []*meshpb.WriterTime{{Writer: "10.0.0.9:7946#0000beef", Time: 30}},
			Delta:   []*meshpb.Entry{alive("10.0.0.9:7946", 30, "nine"), failed(self, 31)},
		},
		{Full: true, Cut: 5, Delta: []*meshpb.Entry{failed("10.0.0.2:7946", 6)}},
		{Push: true, From: "10.0.0.2:7946", Delta: []*meshpb.Entry{
			{Addr: "10.0.0.2:7946", Time: 50, Writer: "10.0.0.2:7946#0000beef", State: meshpb.State_STATE_LEFT}}},
		{Full: true, Delta: []*meshpb.Entry{alive("10.0.0.5:1", 1<<40, "jump")}},
		{Full: true, Delta: []*meshpb.Entry{alive("[::1]:7946", 3, "six"), alive("h:1", 3, "x"),
			alive("h:2", 3, "x"), alive("h:3", 3, "x"), alive("h:4", 3, "x")}}, // 5 > 4, one time
		{Full: true, Delta: []*meshpb.Entry{failed("a:1", 3), failed("b:1", 4), failed("c:1", 5), failed("d:1", 6), failed("e:1", 7)}},
		{Full: true, Version: []*meshpb.WriterTime{{Writer: "", Time: 1}}},
		{Full: true, Version: []*meshpb.WriterTime{{Writer: "w", Time: math.MaxUint64}}},
		{Cluster: "other", Full: true},
	}
	for _, req := range seeds {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		var req meshpb.SyncRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return // gRPC refuses it before the handler
		}
		m, now := exchangeMachine(t)
		before := snapshotOf(m)
		resp, err := m.Answer(proto.Clone(&req).(*meshpb.SyncRequest), now)
		if err != nil {
			if resp != nil {
				t.Fatalf("Answer returned both an answer and an error (%v)", err)
			}
			if got := snapshotOf(m); got != before {
				t.Fatalf("refused request (%v) changed the machine:\n got  %s\n want %s\nrequest: %v", err, got, before, &req)
			}
			return
		}
		if resp == nil {
			t.Fatalf("Answer returned neither an answer nor an error for %v", &req)
		}
		if b, err := proto.Marshal(resp); err != nil {
			t.Fatalf("answer does not encode: %v\nrequest: %v", err, &req)
		} else if err := proto.Unmarshal(b, new(meshpb.SyncResponse)); err != nil {
			t.Fatalf("answer does not decode: %v\nrequest: %v", err, &req)
		}
		after := m.Digest()
		if _, err := m.Answer(proto.Clone(&req).(*meshpb.SyncRequest), now); err != nil {
			t.Fatalf("a request accepted once is refused the second time: %v\nrequest: %v", err, &req)
		}
		if m.Digest() != after {
			t.Fatalf("delivering an accepted request again changed the digest %x -> %x\nrequest: %v", after, m.Digest(), &req)
		}
		if n := len(m.List()); n > fuzzMaxMembers {
			t.Fatalf("machine holds %d entries, above MaxMembers %d", n, fuzzMaxMembers)
		}
		for _, o := range m.Round(now.Add(fuzzPeriod)) {
			if _, err := proto.Marshal(o.Request); err != nil {
				t.Fatalf("next round's request to %s does not encode: %v", o.To, err)
			}
		}
	})
}

const (
	fuzzPeriod     = 100 * time.Millisecond
	fuzzMaxMembers = 8
)

// exchangeMachine builds, deterministically, the machine of 10.0.0.1:7946
// after three peers met, 10.0.0.3 left and 10.0.0.4 was declared failed.
func exchangeMachine(tb testing.TB) (*peer.Machine, time.Time) {
	tb.Helper()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := map[string]*peer.Machine{}
	var order []string
	for i := range 3 {
		addr := fmt.Sprintf("10.0.0.%d:7946", i+1)
		ms[addr] = peer.NewMachine(peer.PeerConfig{SelfEndpoint: addr, PingPeriod: fuzzPeriod,
			MaxMembers: fuzzMaxMembers, MaxDeltaEntries: 4, MaxMetaBytes: 256,
			Rand: rand.New(rand.NewPCG(uint64(i+1), 7))}, now)
		if err := ms[addr].SetMeta(&meshpb.PeerMeta{Name: fmt.Sprintf("n%d", i+1), Tags: map[string]string{"zone": "a"}}, now); err != nil {
			tb.Fatal(err)
		}
		if i > 0 {
			if err := ms[addr].AddSeed(order[0], now); err != nil {
				tb.Fatal(err)
			}
		}
		order = append(order, addr)
	}
	for range 6 {
		now = now.Add(fuzzPeriod)
		for _, a := range order {
			for _, o := range ms[a].Round(now) {
				for o != nil {
					to := ms[o.To]
					if to == nil {
						ms[a].Fail(o, fmt.Errorf("no such peer"), now)
						break
					}
					resp, err := to.Answer(o.Request, now)
					if err != nil {
						ms[a].Fail(o, err, now)
						break
					}
					if o, err = ms[a].Deliver(o, resp, now); err != nil {
						tb.Fatalf("deliver: %v", err)
					}
				}
			}
		}
	}
	a := ms[order[0]]
	if got := len(a.Members()); got != 3 {
		tb.Fatalf("setup: %s sees %d members, want 3", a.Addr(), got)
	}
	req, _ := ms[order[2]].Leave(now)
	if _, err := a.Answer(req, now); err != nil {
		tb.Fatalf("setup: leave: %v", err)
	}
	fail := &meshpb.Entry{Addr: "10.0.0.4:7946", Time: 20, Writer: order[1] + "#00000001", State: meshpb.State_STATE_FAILED,
		Meta: &meshpb.PeerMeta{Name: "n4"}}
	if _, err := a.Answer(&meshpb.SyncRequest{Full: true, Delta: []*meshpb.Entry{fail}}, now); err != nil {
		tb.Fatalf("setup: failed member: %v", err)
	}
	a.TakeEvents()
	return a, now
}

// snapshotOf prints everything observable about m, for comparisons.
func snapshotOf(m *peer.Machine) string {
	members := m.Members()
	addrs := make([]string, 0, len(members))
	for a := range members {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	s := fmt.Sprintf("digest %x stats %+v members", m.Digest(), m.Stats())
	for _, a := range addrs {
		s += fmt.Sprintf(" %s=%s", a, prototextOf(members[a]))
	}
	s += " entries"
	for _, e := range m.List() {
		s += fmt.Sprintf(" %s/%v/%s", e.Addr, e.State, prototextOf(e.Meta))
	}
	return s
}

func prototextOf(m *meshpb.PeerMeta) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return fmt.Sprintf("%x", b)
}
