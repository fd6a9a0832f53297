// Package sim is a deterministic simulator of mesh clusters: it drives
// thousands of peer.Machine values — the production protocol, not a model
// of it — over a simulated network in virtual time, injects faults, and
// checks invariants after every event.
//
// # Determinism
//
// One seeded math/rand/v2 source picks everything: each peer's phase
// offset in [0, PingPeriod), each machine's own Rand (hence its partner
// choices and incarnation id), every latency and loss, and every choice a
// scenario draws from Sim.Rand. Events sit in one priority queue ordered
// by (virtual time, sequence number); nothing runs on a goroutine or reads
// the clock. The same seed therefore gives the same run, event for event:
// TraceDigest, an FNV-1a hash over every record and the content of every
// message, field by field, proves it (TestSameSeedSameTrace). A round's
// calls are sorted by address and meta tags hashed in key order, so no
// map order leaks into a run.
//
// # Network
//
// Every PingPeriod (plus Slow's extra delay) a peer runs Machine.Round.
// Each request's encoded size is counted, and the addressee receives it
// after a latency drawn from Latency. With WireCopy (the default) it is
// encoded with proto.Marshal and the addressee gets a decoded copy, so no
// two machines share a message; with WireShared it gets the sender's
// message, whose size is computed field by field, and all machines share
// one copy of each address, writer id and meta: the same run, event for
// event, at a fraction of the CPU and memory (TestWireModesAgree). The
// answer travels back the same way to
// Deliver; a follow-up request starts a new call. A call fails, through
// Machine.Fail, at its RPC deadline (RPCTimeout after it started) when the
// request or answer was lost, cut by a partition, sent to a crashed peer,
// or would arrive late. Faults: Loss, Latency, Partition (two-way between
// groups), Block (one-way), Heal, Crash (silent), Leave (Machine.Leave and
// its pushes), Restart (a fresh Machine at the same address with a new
// meta, seeded with a random live peer), Slow, Stall (a paused process: no
// rounds, requests wait in its socket).
//
// # Invariants
//
// The checkers follow each machine's events (TakeEvents after every call)
// and compare them with what the simulator knows to be true:
//
//   - convergence: AwaitConvergence demands that every live peer hold
//     exactly the live peers with their current metas within a bound
//     after the last fault;
//   - no false removal: an EventFailed (decided by the peer itself or
//     learned from others) for a peer that runs is false unless,
//     within Expiry (as the declaring peer applies it: by default it
//     grows with log N) + RPCTimeout + 2 periods, that peer restarted or
//     stalled, the declaring peer stalled, or a partition cut the two;
//   - crash detection: with Config.CrashBound, every live peer has removed
//     a crashed peer within the bound;
//   - no zombie: a peer that is down never reappears at an observer that
//     removed it, nor anywhere once every live peer removed it;
//   - no stale meta: an observer never replaces a member's meta by an
//     older one (an older incarnation or write winning);
//   - quiescence: CheckQuiescent compares Members() with the truth and
//     with the events, and demands that all digests agree.
//
// Honest machines never refuse each other's messages, so any error from
// Answer or Deliver is a violation too. A violation records the virtual
// time and the last trace records of the peers concerned; Sim.Err prints
// them with the seed and the command that replays the run.
//
// # Scenarios
//
// Scenarios (join, steady, churn, loss, partition, cut, oneway, restart,
// crashloop, metastorm, slow, and those of the observer overlay:
// unreachable, flipflop, brokenlink, isolated) are sized by Options and
// return a Report of
// measured figures against the project's targets. They run as tests
// (small), as benchmarks (full size) and from cmd/mesh-sim:
//
//	go run ./cmd/mesh-sim -scenario join -n 1000 -seed 42
//	go run ./cmd/mesh-sim -scenario steady -n 5000 -duration 100s -wire shared
//
// # Cost
//
// Every peer holds every other, so memory and the work of a round grow
// as N²: each peer keeps an entry per member (a slot in crdt.Map, its
// writer's record and log item, two hash-table positions). A round's
// messages do not grow with N once the cluster has converged. Steady
// (StartConverged) skips the join, whose full-state exchanges dominate
// below; docs/SIMULATOR.md gives measured figures.
package sim
