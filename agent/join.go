package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// lookupTimeout bounds one DNS resolution of a join name.
const lookupTimeout = 5 * time.Second

// seeder is the part of *peer.Peer the joiner needs.
type seeder interface{ AddSeed(addr string) }

// joiner turns join addresses into seeds. An IP address is a seed as it
// is. A host name is resolved at once and then again and again, with the
// backoff the peer uses for seeds (period doubling to maxBackoff), and
// every address it resolves to becomes a seed: a headless service that
// grows is followed, and AddSeed ignores addresses it already has.
// Addresses that disappear from DNS stay seeds (the peer has no way to
// drop one); the peer retries them with capped backoff.
type joiner struct {
	resolver   Resolver
	seeds      seeder
	period     time.Duration
	maxBackoff time.Duration
	log        *slog.Logger

	mu    sync.Mutex
	names map[string]*resolution // by "host:port" of a host name
}

type resolution struct {
	next    time.Time
	backoff time.Duration
	seen    map[string]bool // addresses already seeded
}

func newJoiner(r Resolver, s seeder, period time.Duration, log *slog.Logger) *joiner {
	if r == nil {
		r = net.DefaultResolver
	}
	return &joiner{resolver: r, seeds: s, period: period, maxBackoff: 30 * period, log: log, names: map[string]*resolution{}}
}

// resolve returns the seed addresses addr stands for, sorted.
func (j *joiner) resolve(ctx context.Context, addr string) ([]string, error) {
	host, port, err := splitHostPort(addr, false)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) != nil {
		return []string{addr}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	ips, err := j.resolver.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, fmt.Sprint(port)))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// add makes seeds of addrs and keeps their host names for re-resolution,
// returning the addresses seeded. When strict (an operator's Join call),
// any address that is invalid or does not resolve fails the call and
// nothing is added. Otherwise (the --join flag at start) a name that does
// not resolve yet is logged and retried with backoff.
func (j *joiner) add(ctx context.Context, addrs []string, now time.Time, strict bool) ([]string, error) {
	resolved := make([][]string, len(addrs))
	var errs []error
	for i, a := range addrs {
		r, err := j.resolve(ctx, a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resolved[i] = r
	}
	if strict && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, err := range errs {
		j.log.Warn("join address not resolved yet; retrying", "err", err)
	}
	var seeded []string
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue // reported above
		}
		if net.ParseIP(host) == nil {
			r := j.names[a]
			if r == nil {
				r = &resolution{seen: map[string]bool{}}
				j.names[a] = r
			}
			if resolved[i] == nil {
				r.reschedule(now, j.period, j.maxBackoff)
			} else {
				r.backoff = 0 // a fresh name starts the schedule again
				r.reschedule(now, j.period, j.maxBackoff)
			}
			for _, s := range resolved[i] {
				r.seen[s] = true
			}
		}
		for _, s := range resolved[i] {
			j.seeds.AddSeed(s)
			seeded = append(seeded, s)
		}
	}
	return seeded, nil
}

// reschedule sets the next resolution after the current backoff and
// doubles it, up to limit.
func (r *resolution) reschedule(now time.Time, period, limit time.Duration) {
	if r.backoff == 0 {
		r.backoff = period
	}
	r.next = now.Add(r.backoff)
	r.backoff = min(2*r.backoff, limit)
}

// tick re-resolves the names due at now and seeds what they resolve to.
// It blocks for the lookups (each bounded by lookupTimeout).
func (j *joiner) tick(ctx context.Context, now time.Time) {
	j.mu.Lock()
	var due []string
	for a, r := range j.names {
		if !now.Before(r.next) {
			due = append(due, a)
		}
	}
	j.mu.Unlock()
	slices.Sort(due)
	for _, a := range due {
		addrs, err := j.resolve(ctx, a)
		j.mu.Lock()
		r := j.names[a]
		r.reschedule(now, j.period, j.maxBackoff)
		var fresh []string
		for _, s := range addrs {
			if !r.seen[s] {
				r.seen[s] = true
				fresh = append(fresh, s)
			}
		}
		j.mu.Unlock()
		if err != nil {
			j.log.Warn("join address not resolved; retrying", "addr", a, "err", err)
			continue
		}
		for _, s := range addrs {
			j.seeds.AddSeed(s) // known seeds are ignored
		}
		if len(fresh) > 0 {
			j.log.Info("join name resolved to new addresses", "addr", a, "seeds", fresh)
		}
	}
}
