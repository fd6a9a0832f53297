package faults

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// setFaultsOn writes spec to host i's proxy control file only.
func (c *cluster) setFaultsOn(i int, spec string) {
	if err := os.WriteFile(c.agents[i].ctl, []byte(spec), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// cutOff makes host v unreachable with fault (see the proxy) for hold,
// and returns when every other agent lists it as failed, with the time
// the fault began, the slowest other agent's failed event after it, and
// the agents other than v.
func (c *cluster) cutOff(v int, fault string, hold time.Duration) (tCut time.Time, detect time.Duration, obs []*agent) {
	t := c.t
	t.Helper()
	addr := c.gossipAddr(v)
	others := slices.DeleteFunc(c.running(), func(i int) bool { return i == v })
	for _, i := range others {
		obs = append(obs, c.agents[i])
	}
	tCut = time.Now()
	c.setFaultsOn(v, fault)
	c.waitOn(fmt.Sprintf("the others list h%d (%s) as failed", v+1, fault), hold, others, func(i int, m members) bool {
		return m.get(addr).Status == "failed"
	})
	detect, missing := spread(t, obs, tCut, addr, isType("failed"))
	if missing > 0 {
		t.Errorf("%d watchers list h%d as failed but printed no failed event", missing, v+1)
	}
	return tCut, detect, obs
}

// relisted returns the join and update events about addr that the
// observers printed after their first failed event since since and
// before until: a member listed again while it could not be reached.
func relisted(t *testing.T, obs []*agent, since, until time.Time, addr string) []event {
	var out []event
	for _, o := range obs {
		dropped := false
		for _, ev := range events(t, o) {
			if ev.Addr != addr || ev.Time.Before(since) || !ev.Time.Before(until) {
				continue
			}
			switch {
			case ev.Type == "failed":
				dropped = true
			case dropped && (ev.Type == "join" || ev.Type == "update"):
				out = append(out, ev)
			}
		}
	}
	return out
}

// testUnreachable resets every connection coming in to one agent for 40
// periods while its own calls go out: it can talk but cannot be talked
// to. The others remove it, list it nowhere while it refutes, and list
// it again once it can be reached; nobody else is removed.
func testUnreachable(t *testing.T, nw *network, bin string, P time.Duration) {
	c := newCluster(t, nw, bin, P, clusterOpts{proxied: true})
	v := 6
	addr := c.gossipAddr(v)
	refut0 := c.metricOf(v, "mesh_refutations_total")
	tCut, detect, obs := c.cutOff(v, "refuse", 40*P)
	time.Sleep(time.Until(tCut.Add(40 * P))) // the fault's length
	tHeal := time.Now()
	again := relisted(t, obs, tCut, tHeal, addr)
	refuted := c.metricOf(v, "mesh_refutations_total") - refut0
	c.setFaultsOn(v, "")
	c.waitAll("the reachable agent is back everywhere", 20*time.Second+20*P, func(i int, m members) bool {
		return m.alive() == len(c.agents) && m.Converged
	})
	back, missing := spread(t, obs, tHeal, addr, isType("join", "update"))
	if missing > 0 {
		t.Errorf("%d watchers printed no join of h%d once reachable", missing, v+1)
	}
	falseRm := c.removals(tCut, func(ev event) bool { return ev.Addr == addr }, c.agents)
	say(t, "FIGURES unreachable: every connection into one agent reset for 40P, its own calls going out: dropped by all %.1fP after the cut (Expiry + 3P = 8P); listed again while unreachable %d times, though it refuted %.0f times; back everywhere %.1fP after it was reachable again; false removals %d",
		c.periods(detect), len(again), refuted, c.periods(back), len(falseRm))
	for _, ev := range again {
		t.Errorf("%s listed the unreachable agent again: %s at %v", ev.watcher, ev.Type, ev.Time.Sub(tCut).Round(time.Millisecond))
	}
	for _, ev := range falseRm {
		t.Errorf("false removal: %s saw %s %s (%s)", ev.watcher, ev.Type, ev.Addr, ev.Name)
	}
	if detect > 8*P+2*P || back > 10*P {
		t.Errorf("dropped after %.1fP (want within Expiry + 3P = 8P, 2P of slack for a real network) or back after %.1fP (want within 10P)",
			c.periods(detect), c.periods(back))
	}
}

// testFlipFlop blackholes one agent's incoming connections for 20
// periods, opens them for 20, three times: it is removed in every
// closed phase, back in every open one, and nobody else is removed.
func testFlipFlop(t *testing.T, nw *network, bin string, P time.Duration) {
	c := newCluster(t, nw, bin, P, clusterOpts{proxied: true})
	v := 5
	addr := c.gossipAddr(v)
	start := time.Now()
	var drops, backs []string
	var again []event
	for cycle := range 3 {
		tCut, detect, obs := c.cutOff(v, "blackhole", 20*P)
		drops = append(drops, fmt.Sprintf("%.1f", c.periods(detect)))
		time.Sleep(time.Until(tCut.Add(20 * P)))
		tOpen := time.Now()
		again = append(again, relisted(t, obs, tCut, tOpen, addr)...)
		c.setFaultsOn(v, "")
		c.waitAll(fmt.Sprintf("cycle %d: back everywhere", cycle+1), 20*P, func(i int, m members) bool {
			return m.alive() == len(c.agents)
		})
		back, missing := spread(t, obs, tOpen, addr, isType("join", "update"))
		if missing > 0 {
			t.Errorf("cycle %d: %d watchers printed no join of h%d", cycle+1, missing, v+1)
		}
		backs = append(backs, fmt.Sprintf("%.1f", c.periods(back)))
		time.Sleep(time.Until(tOpen.Add(20 * P)))
	}
	falseRm := c.removals(start, func(ev event) bool { return ev.Addr == addr }, c.agents)
	say(t, "FIGURES flipflop: one agent's incoming connections blackholed for 20P and open for 20P, 3 times: dropped by all after %sP, back everywhere after %sP; listed again while unreachable %d times; false removals %d",
		strings.Join(drops, ", "), strings.Join(backs, ", "), len(again), len(falseRm))
	for _, ev := range again {
		t.Errorf("%s listed the blackholed agent again: %s", ev.watcher, ev.Type)
	}
	for _, ev := range falseRm {
		t.Errorf("false removal: %s saw %s %s (%s)", ev.watcher, ev.Type, ev.Addr, ev.Name)
	}
}
