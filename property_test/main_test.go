// Package property_test checks the merge laws of mesh/crdt with
// property-based tests (pgregory.net/rapid): commutativity, associativity
// and idempotence, delta ≡ full merge, convergence of replicas exchanging
// deltas over a lossy network, tombstone GC without resurrection, and a
// state-machine test of crdt.Map against a plain-map model. FuzzDecodeMerge
// feeds arbitrary bytes through the wire decoder into ApplyDelta.
//
// A failure prints the shrunk counterexample and a -rapid.seed (or
// -rapid.failfile) that replays it exactly.
package property_test

import (
	"flag"
	"os"
	"testing"
)

// defaultChecks is how many cases each property runs unless the caller
// passes -rapid.checks or sets RAPID_CHECKS: the project asks for ≥ 1,000.
const defaultChecks = "1000"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			explicit = true
		}
	})
	if _, ok := os.LookupEnv("RAPID_CHECKS"); !ok && !explicit {
		if err := flag.Set("rapid.checks", defaultChecks); err != nil {
			panic(err) // rapid renamed its flag: fail loudly, not silently run 100
		}
	}
	os.Exit(m.Run())
}
