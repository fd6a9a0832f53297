//go:build race

package sim

// raceEnabled shrinks the scenario tests under the race detector, which
// slows the machines' map-heavy code about tenfold; the full sizes run
// without it and in the benchmarks.
const raceEnabled = true
