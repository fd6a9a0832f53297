package property_test

import (
	"errors"
	"maps"
	"math"
	"testing"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
	"google.golang.org/protobuf/proto"
)

// deltaFromWire converts the delta part of a decoded SyncRequest the way a
// peer would: the address is the key, the name is the value, any state but
// alive is a tombstone. A writer repeated in the version takes its highest
// time (the wire allows repeats; a VersionVector cannot hold them).
func deltaFromWire(req *meshpb.SyncRequest) delta {
	var d delta
	for _, e := range req.GetDelta() {
		d.Entries = append(d.Entries, entry{
			Key:     e.GetAddr(),
			Stamp:   crdt.Stamp{Time: e.GetTime(), Writer: e.GetWriter()},
			Value:   e.GetMeta().GetName(),
			Deleted: e.GetState() != meshpb.State_STATE_ALIVE,
		})
	}
	if len(req.GetVersion()) > 0 {
		d.Covers = crdt.VersionVector{}
		for _, wt := range req.GetVersion() {
			if t, ok := d.Covers[wt.GetWriter()]; !ok || wt.GetTime() > t {
				d.Covers[wt.GetWriter()] = wt.GetTime()
			}
		}
	}
	return d
}

// seededMap is a small membership map with a live member, a failed one, a
// purged tombstone (so the floor is 4) and a version vector.
func seededMap(tb testing.TB) *smap {
	m := &smap{}
	for _, e := range []entry{
		{Key: "10.0.0.1:7946", Stamp: crdt.Stamp{Time: 3, Writer: "10.0.0.1:7946"}, Value: "alpha"},
		{Key: "10.0.0.2:7946", Stamp: crdt.Stamp{Time: 5, Writer: "10.0.0.1:7946"}, Deleted: true},
		{Key: "10.0.0.3:7946", Stamp: crdt.Stamp{Time: 4, Writer: "10.0.0.3:7946"}, Deleted: true},
		{Key: "10.0.0.4:7946", Stamp: crdt.Stamp{Time: 6, Writer: "10.0.0.4:7946"}, Value: "delta"},
	} {
		if _, err := m.Apply(e); err != nil {
			tb.Fatal(err)
		}
	}
	m.Purge(func(e entry) bool { return e.Key == "10.0.0.3:7946" })
	return m
}

func wireEntry(addr string, t uint64, writer string, st meshpb.State, name string) *meshpb.Entry {
	e := &meshpb.Entry{Addr: addr, Time: t, Writer: writer, State: st}
	if st == meshpb.State_STATE_ALIVE {
		e.Meta = &meshpb.PeerMeta{Name: name}
	}
	return e
}

func FuzzDecodeMerge(f *testing.F) {
	seeds := []*meshpb.SyncRequest{
		{},
		{ // a plausible second request: version and delta
			Cluster: "test", From: "10.0.0.9:7946", Full: true,
			Version: []*meshpb.WriterTime{{Writer: "10.0.0.9:7946", Time: 7}, {Writer: "10.0.0.1:7946", Time: 5}},
			Delta: []*meshpb.Entry{
				wireEntry("10.0.0.9:7946", 7, "10.0.0.9:7946", meshpb.State_STATE_ALIVE, "nine"),
				wireEntry("10.0.0.1:7946", 6, "10.0.0.9:7946", meshpb.State_STATE_FAILED, ""),
				wireEntry("10.0.0.2:7946", 8, "10.0.0.2:7946", meshpb.State_STATE_ALIVE, "back"),
			},
		},
		{ // below the floor, a tie and a left member
			Delta: []*meshpb.Entry{
				wireEntry("10.0.0.3:7946", 2, "10.0.0.3:7946", meshpb.State_STATE_ALIVE, "old"),
				wireEntry("10.0.0.1:7946", 3, "10.0.0.1:7946", meshpb.State_STATE_ALIVE, "impostor"),
				wireEntry("10.0.0.4:7946", 9, "10.0.0.4:7946", meshpb.State_STATE_LEFT, ""),
			},
		},
		{ // a writer repeated in the version
			Version: []*meshpb.WriterTime{{Writer: "a", Time: 9}, {Writer: "a", Time: 2}, {Writer: "b", Time: 1}},
		},
		{Delta: []*meshpb.Entry{wireEntry("", 1, "w", meshpb.State_STATE_ALIVE, "empty key")}},
		{Delta: []*meshpb.Entry{wireEntry("k", 0, "w", meshpb.State_STATE_ALIVE, "time 0")}},
		{Delta: []*meshpb.Entry{wireEntry("k", math.MaxUint64, "w", meshpb.State_STATE_ALIVE, "absurd")}},
		{Delta: []*meshpb.Entry{wireEntry("k", 1, "", meshpb.State_STATE_ALIVE, "no writer")}},
		{Version: []*meshpb.WriterTime{{Writer: "", Time: 1}}},
		{Version: []*meshpb.WriterTime{{Writer: "w", Time: math.MaxUint64}}},
		{Delta: []*meshpb.Entry{{Addr: "k", Time: 1, Writer: "w", State: meshpb.State(42)}}},
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
			return // not a message: the peer drops it before any merge
		}
		d := deltaFromWire(&req)
		m := seededMap(t)
		before := m.Clone()

		changes, err := m.ApplyDelta(d)
		if err != nil {
			if !errors.Is(err, crdt.ErrInvalidEntry) || changes != nil {
				t.Fatalf("ApplyDelta(%+v) = %v, %v; want nil changes and an ErrInvalidEntry", d, changes, err)
			}
			requireUnchanged(t, "after a rejected delta", m, before)
			return
		}
		for _, c := range changes {
			if e, _ := m.Lookup(c.New.Key); !c.New.Stamp.Less(e.Stamp) && e != c.New {
				t.Fatalf("reported change %+v, but the map holds %+v", c, e)
			}
		}
		if m.Len() != len(maps.Collect(m.Live())) {
			t.Fatalf("Len() = %d, Live() has %d", m.Len(), len(maps.Collect(m.Live())))
		}
		after := m.Clone()
		again, err := m.ApplyDelta(d)
		if err != nil || len(again) != 0 {
			t.Fatalf("re-applying %+v: changes %v, err %v; want none", d, again, err)
		}
		requireUnchanged(t, "after re-applying a delta", m, after)
	})
}

// requireUnchanged fails unless m still equals want in entries, live
// values, version and floor.
func requireUnchanged(t *testing.T, what string, m, want *smap) {
	t.Helper()
	if !m.Equal(want) || !maps.Equal(liveOf(m), liveOf(want)) || m.Len() != want.Len() ||
		!maps.Equal(m.Version(), want.Version()) || m.Floor() != want.Floor() {
		t.Fatalf("%s:\n got  %s\n want %s", what, dump(m), dump(want))
	}
}
