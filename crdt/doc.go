// Package crdt holds the replicated data types mesh builds membership on:
// a last-writer-wins map ([Map]) stamped with Lamport clocks ([Stamp],
// [Clock]), version vectors ([VersionVector]) that find what a replica
// lacks, and a grow-only max-counter map ([Counters]).
//
// Everything here is a plain value with no I/O, goroutines, locks or clock
// reads: stamps, writer ids and times are arguments, so the same calls give
// the same states on every replica and in every test. Callers synchronise.
//
// # Merge laws
//
// For any states a, b, c, merging is commutative (a⊔b = b⊔a), associative
// ((a⊔b)⊔c = a⊔(b⊔c)) and idempotent (a⊔a = a). For [Map] the join takes, per
// key, the write with the greater [Stamp]; stamps order by (Time, Writer),
// so two distinct writes never tie and a tombstone (a delete) is just a
// write: a newer tombstone beats an older value and a newer value beats an
// older tombstone. These laws are checked by property tests in
// mesh/property_test, not assumed.
//
// # Deltas
//
// Each replica keeps a [VersionVector]: for every writer, the highest
// Lamport time of that writer's writes it has, or has something newer than
// for the same key. [Map.PruneVersion] drops writers of which nothing is
// left, so that vectors do not grow with every writer that ever existed. [Map.Delta] returns the writes a partner with vector pv
// lacks: every entry whose stamp time exceeds pv[writer]. Applying it with
// [Map.ApplyDelta] leaves the partner exactly as a full merge would. A delta
// may be cut to a size limit: it then carries every missing write up to a
// Lamport time T and nothing above, and the partner raises its vector only
// up to T, so the rest comes next time. (A write at or below T that the
// sender has overwritten above T is then claimed without being sent. It is
// superseded and its successor comes next time, so replicas still
// converge; until then a delta to that partner may omit a write that a
// full merge would take.)
//
// # Tombstone garbage collection
//
// [Map.Purge] removes tombstones the caller chooses (mesh purges those that
// are older than a configured age). Forgetting a tombstone could let an
// older write of the same key come back from a replica that never saw the
// delete, so the map remembers a floor: the highest Lamport time of any
// purged tombstone. Afterwards a write for a key the map does not hold is
// rejected when its time is at or below the floor. A legitimate owner whose
// write is rejected that way re-asserts it with a fresh stamp above the
// floor, which it learns from its partners (see mesh/docs/PROTOCOL.md).
package crdt
