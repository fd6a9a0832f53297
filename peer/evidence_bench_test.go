package peer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gossipmesh/mesh/meshpb"
)

// benchState returns a state that holds n live members, self included,
// all with fresh evidence of holding its state: a converged cluster.
func benchState(b testing.TB, n int) (*state, time.Time) {
	s := newTestState("10.0.0.1:7946")
	var in []*meshpb.Entry
	for i := 2; i <= n; i++ {
		a := fmt.Sprintf("10.0.%d.%d:7946", i>>8, i&255)
		in = append(in, &meshpb.Entry{Addr: a, Time: uint64(i), Writer: a + "#00000001", Meta: &meshpb.PeerMeta{}})
	}
	s.cfg.MaxDeltaEntries = n
	if _, err := s.applyEntries(in, nil, t0); err != nil {
		b.Fatal(err)
	}
	now := t0.Add(3 * p)
	for i := range s.view {
		s.learnAt(i, 8, s.digest, now)
	}
	return s, now
}

// The per-round work of a converged cluster is a few passes over the
// view per exchange: these measure them per member.
func BenchmarkEvidence(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		s, now := benchState(b, n)
		req := s.digestRequest(now)
		b.Run(fmt.Sprintf("digestRequest/N=%d", n), func(b *testing.B) {
			for b.Loop() {
				s.digestRequest(now)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/member")
		})
		// In a converged cluster either side's evidence is fresher by
		// chance: ages around ours (8), in random order.
		mixed := &meshpb.SyncRequest{Digest: req.Digest, Ages: slices.Clone(req.Ages)}
		r := rand.New(rand.NewPCG(1, 1))
		for i := range mixed.Ages {
			mixed.Ages[i] = byte(4 + r.IntN(9))
		}
		b.Run(fmt.Sprintf("answerAges/mixed/N=%d", n), func(b *testing.B) {
			for b.Loop() {
				s.answerAges(mixed, now)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/member")
		})
		b.Run(fmt.Sprintf("answerAges/N=%d", n), func(b *testing.B) {
			for b.Loop() {
				s.answerAges(req, now)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/member")
		})
		b.Run(fmt.Sprintf("round/N=%d", n), func(b *testing.B) {
			for b.Loop() {
				for _, ex := range s.round(now) {
					s.done(ex)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/member")
		})
	}
}

func TestMetaSizeIsProtoSize(t *testing.T) {
	long := string(make([]byte, 300))
	for _, m := range []*meshpb.PeerMeta{
		{}, {Name: "a"}, {Name: long}, {Tags: map[string]string{"": ""}},
		{Name: "peer-1", Tags: map[string]string{"zone": "z1", long: "", "k": long}},
	} {
		if got, want := metaSize(m), proto.Size(m); got != want {
			t.Errorf("metaSize(%v) = %d, proto.Size = %d", m, got, want)
		}
	}
}
