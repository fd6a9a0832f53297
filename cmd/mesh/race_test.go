//go:build race

package main

// raceEnabled: the binary under test is built with -race too, reusing
// the packages this test binary was compiled from.
const raceEnabled = true
