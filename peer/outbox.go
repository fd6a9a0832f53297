package peer

import (
	"maps"
	"slices"
	"strings"
)

// outbox batches the news a peer tells each neighbour: at most one push is
// in flight to a neighbour, and what comes meanwhile waits for the next,
// keeping only the newest entry per member and the newest report per
// observer and subject. A burst of news (a join wave, a partition's
// failures) so costs a few pushes per neighbour, not one per item, and a
// slow neighbour holds one call, not a queue of them. A push that fails
// is queued again once, to go with the next round (a lost message or a
// reset connection must not cost a neighbour the news until anti-entropy
// brings it); failing again, it is dropped. A pure value.
type outbox struct {
	queued   map[string]*batch
	inflight map[string]bool
}

type batch struct {
	entries map[string]entry
	reports map[[2]string]report // by observer and subject
	retry   bool                 // holds a failed push's news: not retried again
}

// add queues entries and reports for to.
func (o *outbox) add(to string, es []entry, rs []report) {
	if o.queued == nil {
		o.queued, o.inflight = map[string]*batch{}, map[string]bool{}
	}
	b := o.queued[to]
	if b == nil {
		b = &batch{entries: map[string]entry{}, reports: map[[2]string]report{}}
		o.queued[to] = b
	}
	for _, e := range es {
		if old, ok := b.entries[e.Key]; !ok || old.Stamp.Less(e.Stamp) {
			b.entries[e.Key] = e
		}
	}
	for _, r := range rs {
		k := [2]string{r.observer, r.subject}
		if old, ok := b.reports[k]; !ok || r.newer(old) {
			b.reports[k] = r
		}
	}
}

// take returns what is queued for to, at most max entries, whether it
// holds a failed push's news, and marks a push to it in flight; or
// reports false while one is in flight or nothing is queued. Over max,
// tombstones (leaves, failures) go first and the rest waits for the next
// push: a receiver refuses a message of more than MaxDeltaEntries, and a
// departure matters more than a meta. Reports all go.
func (o *outbox) take(to string, max int) (es []entry, rs []report, retry, ok bool) {
	b := o.queued[to]
	if b == nil || o.inflight[to] {
		return nil, nil, false, false
	}
	o.inflight[to] = true
	es = slices.SortedFunc(maps.Values(b.entries), func(x, y entry) int {
		if x.Deleted != y.Deleted { // tombstones first
			if x.Deleted {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Key, y.Key)
	})
	rs = slices.SortedFunc(maps.Values(b.reports), func(x, y report) int {
		return strings.Compare(x.subject+"\x00"+x.observer, y.subject+"\x00"+y.observer)
	})
	if len(es) > max {
		es = es[:max]
		for _, e := range es {
			delete(b.entries, e.Key)
		}
		clear(b.reports)
		return es, rs, b.retry, true
	}
	delete(o.queued, to)
	return es, rs, b.retry, true
}

// done ends the push in flight to to.
func (o *outbox) done(to string) { delete(o.inflight, to) }

// failed ends the push in flight to to, which failed carrying es and rs:
// they are queued again unless they were a retry already.
func (o *outbox) failed(to string, es []entry, rs []report, retry bool) {
	o.done(to)
	if !retry {
		o.add(to, es, rs)
		o.queued[to].retry = true
	}
}

// waiting returns, sorted, the neighbours with news queued and no push in
// flight: failed pushes queued again.
func (o *outbox) waiting() []string {
	var out []string
	for to := range o.queued {
		if !o.inflight[to] {
			out = append(out, to)
		}
	}
	slices.Sort(out)
	return out
}

// drop forgets what is queued for to.
func (o *outbox) drop(to string) { delete(o.queued, to) }
