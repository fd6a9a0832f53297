package sim_test

import (
	"fmt"
	"time"

	"github.com/gossipmesh/mesh/sim"
)

// A cluster of 20 peers joins through one seed, loses a peer to a crash
// and converges again; the same seed gives the same trace.
func Example() {
	s := sim.New(sim.Config{Seed: 42})
	seed := s.AddPeer()
	for range 19 {
		s.AddPeer(seed)
	}
	_, joined := s.AwaitConvergence(time.Minute, "join")
	s.Crash(s.Live()[7])
	_, removed := s.AwaitConvergence(time.Minute, "crash")
	fmt.Println(joined, removed, len(s.Live()), s.Err())
	// Output: true true 19 <nil>
}
