// Package faults runs mesh agents as separate processes on separate
// network stacks and breaks the network under them: a partition, message
// loss with jitter, a crash and restart, a stopped (SIGSTOP) host, a host
// that calls out but cannot be reached (for 40 periods, and 20 periods
// on and off three times) and a soak with meta updates and random
// crashes. Every assertion reads the
// agents' own `mesh members --json` and `mesh watch --json` output.
//
// The suite is opt-in: `go test ./test/faults` skips it unless
// MESH_FAULTS=1 (`make faults`, `make soak`). As root it builds one
// network namespace per host (meshf-h1 … meshf-h7, 10.77.0.1-7/24) joined
// by veth pairs to a bridge in a namespace of its own (meshf-br), and
// deletes them afterwards, even when a test fails; namespaces with the
// meshf- prefix left by a crashed run are deleted first. Where namespaces
// cannot be created it says so in one line and runs the agents on
// 127.0.77.1-7 instead; the partition scenario, which needs separate
// links, then fails rather than passes.
//
// Loss, jitter and unreachable hosts come from a fault-injecting TCP proxy in front of each
// agent (the test binary itself, re-executed inside the host's namespace)
// because this kernel has no netem. A TCP stream cannot lose bytes and
// carry on, so a "lost" read resets the connection: the gRPC messages in
// flight on it are lost and the next exchange dials again.
//
// Knobs (environment): MESH_FAULTS_PERIOD (gossip period, default 200ms),
// MESH_FAULTS_LOSS (loss scenario length, default 2m), MESH_FAULTS_SOAK
// (soak length, default 1m), MESH_FAULTS_NETNS=0 (force the fallback),
// MESH_FAULTS_DIR (keep every agent's logs and events there, a
// directory per scenario, instead of in a temporary directory).
package faults
