// Command mesh-sim runs a deterministic simulation scenario of a mesh
// cluster and prints a report: the seed first, progress during long runs,
// then the measured figures and whether every invariant held.
//
//	go run ./cmd/mesh-sim -scenario join -n 1000 -seed 42
//	go run ./cmd/mesh-sim -scenario loss -n 256 -loss 0.1 -duration 30m
//	go run ./cmd/mesh-sim -scenario partition -n 200 -partition 2m
//	go run ./cmd/mesh-sim -scenario steady -n 5000 -duration 100s -wire shared
//	go run ./cmd/mesh-sim -list
//
// -wire shared hands each message over instead of decoding a copy: the
// same run at a fraction of the CPU and memory, for thousands of peers.
// -cpuprofile and -memprofile write pprof profiles of the run.
//
// The same flags and seed replay the same run event for event; a failed
// invariant prints the command that reproduces it. The exit status is 1
// when an invariant failed, 2 on bad flags.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/gossipmesh/mesh/peer"
	"github.com/gossipmesh/mesh/sim"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mesh-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		scenario  = fs.String("scenario", "join", "scenario to run (see -list)")
		n         = fs.Int("n", 0, "peers (0: the scenario's default)")
		seed      = fs.Uint64("seed", 0, "seed (0: from the clock; printed either way)")
		loss      = fs.Float64("loss", 0, "message loss rate, 0..1 (loss scenario)")
		duration  = fs.Duration("duration", 0, "virtual length of the fault phase (0: default)")
		partition = fs.Duration("partition", 0, "virtual length of the partition (partition, oneway)")
		period    = fs.Duration("period", 0, "PingPeriod (0: the peer default, 1s)")
		expiry    = fs.Duration("expiry", 0, "Expiry (0: the peer default, 5 × period)")
		fanout    = fs.Int("fanout", 0, "Fanout (0: the peer default, 1)")
		latMin    = fs.Duration("latency-min", time.Millisecond, "minimum one-way latency")
		latMax    = fs.Duration("latency-max", 10*time.Millisecond, "maximum one-way latency")
		latMean   = fs.Duration("latency-mean", 0, "mean one-way latency: exponential above the minimum (0: uniform min..max)")
		wire      = fs.String("wire", "copy", "how messages cross the network: copy (encode, decode a copy) or shared (count bytes, hand over the message; for thousands of peers)")
		cpuprof   = fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
		memprof   = fs.String("memprofile", "", "write a heap profile at the end of the run to this file")
		quiet     = fs.Bool("quiet", false, "no progress lines")
		list      = fs.Bool("list", false, "list the scenarios and exit")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *list {
		for _, sc := range sim.Scenarios {
			fmt.Fprintf(stdout, "%-10s %s\n", sc.Name, sc.Doc)
		}
		return 0
	}
	if *loss < 0 || *loss >= 1 {
		fmt.Fprintf(stderr, "mesh-sim: -loss %g: want a rate in [0, 1)\n", *loss)
		return 2
	}
	if *n < 0 || *latMin < 0 || *latMax < *latMin {
		fmt.Fprintf(stderr, "mesh-sim: -n must be ≥ 0 and 0 ≤ -latency-min ≤ -latency-max\n")
		return 2
	}
	w, err := sim.ParseWire(*wire)
	if err != nil {
		fmt.Fprintf(stderr, "mesh-sim: -wire: %v\n", err)
		return 2
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	pc := peer.PeerConfig{PingPeriod: *period, Expiry: *expiry, Fanout: *fanout}
	if err := (peer.PeerConfig{SelfEndpoint: "10.0.0.1:7946", PingPeriod: *period, Expiry: *expiry, Fanout: *fanout}).Validate(); err != nil {
		fmt.Fprintf(stderr, "mesh-sim: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "seed %d\n", *seed)
	// Simulated clusters are large, short-lived heaps: trade memory for
	// less collection.
	debug.SetGCPercent(400)
	o := sim.Options{N: *n, Seed: *seed, Loss: *loss, Duration: *duration, Partition: *partition,
		Config: sim.Config{Peer: pc, Wire: w, Latency: sim.Latency{Min: *latMin, Max: *latMax, Mean: *latMean}}}
	if !*quiet {
		o.Progress = stdout
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			fmt.Fprintf(stderr, "mesh-sim: -cpuprofile: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "mesh-sim: -cpuprofile: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	r, err := sim.Run(*scenario, o)
	if err != nil {
		fmt.Fprintf(stderr, "mesh-sim: %v\n", err)
		return 2
	}
	if *memprof != "" {
		if err := writeHeapProfile(*memprof, r); err != nil {
			fmt.Fprintf(stderr, "mesh-sim: -memprofile: %v\n", err)
			return 2
		}
	}
	fmt.Fprint(stdout, r)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(stdout, "  cpu %v, peak heap %.0f MB (%.1f KB per peer slot)\n", (cpuTime() - cpu0).Round(time.Millisecond),
		float64(ms.HeapSys)/1e6, float64(ms.HeapSys)/1e3/float64(max(1, r.N)))
	if r.Err != nil {
		return 1
	}
	return 0
}

// cpuTime is the process's user and system CPU time: on a shared machine
// it says more than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeHeapProfile writes the heap profile while r, and through it the
// simulation, is still reachable: the profile then shows what the
// simulated peers hold.
func writeHeapProfile(path string, r *sim.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	err = pprof.Lookup("heap").WriteTo(f, 0)
	runtime.KeepAlive(r.Sim())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
