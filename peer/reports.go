package peer

import (
	"fmt"
	"maps"
	"slices"

	"github.com/gossipmesh/mesh/crdt"
	"github.com/gossipmesh/mesh/meshpb"
)

// report is an observer's verdict on one entry of a subject: alert (it
// could not reach the subject) or clear (it reached it again).
type report struct {
	observer, subject string
	entry             crdt.Stamp // the subject's entry the verdict is about
	alert             bool
	time              uint64 // the observer's Lamport time: the newest wins
}

// newer reports whether r supersedes q, an earlier report of the same
// observer on the same subject.
func (r report) newer(q report) bool { return r.time > q.time }

// hash mixes the whole report into 64 bits for the state digest.
func (r report) hash() uint64 {
	h := fnv64(fnv64(fnv64(0x84222325cbf29ce4, r.observer), r.subject), r.entry.Writer)
	h ^= mix64(r.entry.Time) ^ mix64(r.time+0x51ed27)
	if r.alert {
		h ^= 0x632be59bd9b4e019
	}
	return mix64(h)
}

// reports holds, per subject, the newest report of each observer about
// the subject's current entry. It is a CRDT (last writer wins per
// observer and subject) whose reports about an entry that is no longer
// the subject's current live entry are dropped, so what it holds is a
// function of the reports received and the membership map: two peers
// with the same membership and the same reports hold the same set, and
// its digest is XORed into the state digest. A pure value: no clock,
// no I/O.
type reports struct {
	by     map[string]map[string]report // subject → observer → report
	digest uint64
}

// put stores r if it is about the subject's current entry cur and newer
// than what the observer said before; it reports whether it changed
// anything.
func (rs *reports) put(r report, cur crdt.Stamp) bool {
	if r.entry != cur {
		return false
	}
	if rs.by == nil {
		rs.by = map[string]map[string]report{}
	}
	of := rs.by[r.subject]
	if old, ok := of[r.observer]; ok {
		if !r.newer(old) {
			return false
		}
		rs.digest ^= old.hash()
	}
	if of == nil {
		of = map[string]report{}
		rs.by[r.subject] = of
	}
	of[r.observer] = r
	rs.digest ^= r.hash()
	return true
}

// retain drops the reports on subject that are not about cur, its current
// live entry (the zero stamp when it has none), and reports how many it
// dropped.
func (rs *reports) retain(subject string, cur crdt.Stamp) int {
	of := rs.by[subject]
	n := 0
	for o, r := range of {
		if r.entry != cur {
			rs.digest ^= r.hash()
			delete(of, o)
			n++
		}
	}
	if len(of) == 0 {
		delete(rs.by, subject)
	}
	return n
}

// alerts returns the observers that alert on subject, sorted.
func (rs *reports) alerts(subject string) []string {
	var out []string
	for o, r := range rs.by[subject] {
		if r.alert {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}

// on returns the reports held on subject, sorted by observer.
func (rs *reports) on(subject string) []report {
	of := rs.by[subject]
	out := make([]report, 0, len(of))
	for _, o := range slices.Sorted(maps.Keys(of)) {
		out = append(out, of[o])
	}
	return out
}

// all returns every report held, sorted by subject then observer.
func (rs *reports) all() []report {
	var out []report
	for _, s := range slices.Sorted(maps.Keys(rs.by)) {
		out = append(out, rs.on(s)...)
	}
	return out
}

func encodeReports(in []report) []*meshpb.Report {
	if len(in) == 0 {
		return nil
	}
	out := make([]*meshpb.Report, len(in))
	for i, r := range in {
		out[i] = &meshpb.Report{Observer: r.observer, Subject: r.subject, SubjectTime: r.entry.Time,
			SubjectWriter: r.entry.Writer, Alert: r.alert, Time: r.time}
	}
	return out
}

// decodeReport checks one wire report.
func decodeReport(pr *meshpb.Report) (report, error) {
	for _, a := range []string{pr.GetObserver(), pr.GetSubject()} {
		if err := ValidateEndpoint(a); err != nil {
			return report{}, fmt.Errorf("%w: report address: %w", errBadRequest, err)
		}
	}
	if w := pr.GetSubjectWriter(); w == "" || len(w) > MaxWriterBytes {
		return report{}, fmt.Errorf("%w: report on %s names an entry writer of %d bytes (1 to %d allowed)", errBadRequest, pr.GetSubject(), len(w), MaxWriterBytes)
	}
	if pr.GetObserver() == pr.GetSubject() {
		return report{}, fmt.Errorf("%w: report by %s on itself; a member never observes itself", errBadRequest, pr.GetSubject())
	}
	return report{observer: pr.GetObserver(), subject: pr.GetSubject(),
		entry: crdt.Stamp{Time: pr.GetSubjectTime(), Writer: pr.GetSubjectWriter()},
		alert: pr.GetAlert(), time: pr.GetTime()}, nil
}
