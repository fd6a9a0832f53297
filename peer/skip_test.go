package peer

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestRoundSkipsAgreeWithFullPasses checks the shortcut a round takes
// (heldSame in digestRequest) against the full pass it skips, while
// evidence arrives with random ages and digests and time passes.
func TestRoundSkipsAgreeWithFullPasses(t *testing.T) {
	s, now := benchState(t, 200)
	r := rand.New(rand.NewPCG(3, 4))
	other := s.digest ^ 1
	for step := range 400 {
		now = now.Add(time.Duration(r.IntN(4)) * p / 2)
		for range r.IntN(20) {
			d := s.digest
			if r.IntN(10) == 0 {
				d = other
			}
			s.learnAt(r.IntN(len(s.view)), byte(r.IntN(40)), d, now)
		}
		var idx []uint32
		for i := range s.ev {
			if s.heldOK[i] && s.ev[i].held != s.digest {
				idx = append(idx, uint32(i))
			}
		}
		if got := s.digestRequest(now).OtherIndex; !slices.Equal(got, idx) {
			t.Fatalf("step %d: digestRequest lists %v, full pass %v", step, got, idx)
		}
	}
}
