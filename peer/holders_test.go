package peer

import (
	"testing"
	"time"

	"github.com/gossipmesh/mesh/meshpb"
)

func TestHoldersSet(t *testing.T) {
	var h holders
	h.reset(7, 10, 3)
	if h.complete() || h.count != 1 || h.bits[0] != 1<<3 {
		t.Fatalf("after reset with self at 3: count %d, bits %08b", h.count, h.bits)
	}
	h.add(3)
	h.add(-1)
	h.add(10) // past the view: ignored
	if h.count != 1 {
		t.Fatalf("count %d after adding self again and two positions outside the view, want 1", h.count)
	}
	// A set of the same view: bits past position 9 are ignored.
	h.union([]byte{0b0000_0101, 0b1111_1110})
	if h.count != 4 || h.bits[1] != 0b10 {
		t.Fatalf("after union: count %d, bits %08b, want 4 and positions 0, 2, 3, 9", h.count, h.bits)
	}
	if h.beyond([]byte{0b0000_1101, 0b10}) {
		t.Fatal("beyond: says it holds a member the other set has")
	}
	if !h.beyond([]byte{0b0000_0101, 0b10}) {
		t.Fatal("beyond: misses position 3")
	}
	before := h.count
	h.union([]byte{0xff}) // another view's size: changes nothing
	if h.count != before || h.fits([]byte{0xff}) {
		t.Fatalf("a set of another view's size was taken: count %d", h.count)
	}
	if b, all := h.encode(); all || len(b) != 2 {
		t.Fatalf("encode of an incomplete set: %x, all %v", b, all)
	}
	h.fill()
	if !h.complete() || h.count != 10 {
		t.Fatalf("after fill: count %d, complete %v", h.count, h.complete())
	}
	if b, all := h.encode(); !all || b != nil {
		t.Fatalf("encode of a complete set: %x, all %v; want nil, true", b, all)
	}
	h.reset(8, 3, -1)
	if h.count != 0 || len(h.bits) != 1 || h.bits[0] != 0 {
		t.Fatalf("reset without self: count %d, bits %08b", h.count, h.bits)
	}
}

// After a change, digest requests list who holds the new state until
// everyone does; then a request says so in one field, whatever the size.
func TestHoldersSpreadUntilComplete(t *testing.T) {
	net, names, now := cluster(t, 12)
	a := net[names[0]]
	if err := a.setMeta(&meshpb.PeerMeta{Name: "changed"}, now); err != nil {
		t.Fatal(err)
	}
	sawBits := false
	for i := 1; ; i++ {
		if i > 20 {
			t.Fatal("holders never complete")
		}
		now = now.Add(p)
		for _, st := range net {
			for _, ex := range st.round(now) {
				if ex.kind == gossipPartner && ex.req.GetDigest() == st.digest && len(ex.req.GetHolders()) > 0 {
					sawBits = true
					if len(ex.req.GetHolders()) != (len(names)+7)/8 || ex.req.GetAllHold() {
						t.Fatalf("request lists %d bytes of holders (all_hold %v), want %d", len(ex.req.GetHolders()), ex.req.GetAllHold(), (len(names)+7)/8)
					}
				}
				deliver(t, net, st, ex, now)
			}
		}
		all := true
		for _, st := range net {
			all = all && st.converged()
		}
		if all {
			t.Logf("all converged after %d rounds", i)
			break
		}
	}
	if !sawBits {
		t.Fatal("no request listed holders while they were being collected")
	}
}

// A digest request whose holders do not fit the responder's view is
// answered as one of another state (with a version vector) and changes
// nothing the responder knows of who holds its state.
func TestHoldersOfAnotherViewAreNotTaken(t *testing.T) {
	net, names, now := cluster(t, 12)
	b := net[names[1]]
	if err := b.setMeta(&meshpb.PeerMeta{Name: "changed"}, now); err != nil {
		t.Fatal(err)
	}
	before := append([]byte(nil), b.holdersNow().bits...)
	resp, err := b.answer(&meshpb.SyncRequest{Digest: b.digest, Holders: []byte{0xff, 0xff, 0xff}}, now.Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetVersion()) == 0 {
		t.Fatal("answered a request of another view's holders as one of the same state")
	}
	if got := b.holdersNow().bits; string(got) != string(before) {
		t.Fatalf("holders changed from %08b to %08b", before, got)
	}
}
