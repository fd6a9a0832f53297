package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gossipmesh/mesh/agent"
	"github.com/gossipmesh/mesh/meshpb"
)

// membersJSON is `mesh members --json`. Field names are an interface:
// add, never rename.
type membersJSON struct {
	Self       string       `json:"self"`
	Cluster    string       `json:"cluster"`
	Period     string       `json:"period"`
	ViewDigest string       `json:"view_digest"` // 16 hex digits
	Converged  bool         `json:"converged"`
	Members    []memberJSON `json:"members"`
}

type memberJSON struct {
	Addr   string            `json:"addr"`
	Name   string            `json:"name"`
	Tags   map[string]string `json:"tags"`
	Status string            `json:"status"` // alive, failed or left
}

// eventJSON is one line of `mesh watch --json`.
type eventJSON struct {
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"` // join, update, leave or failed
	Addr    string            `json:"addr"`
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Dropped uint64            `json:"dropped"`
}

func membersToJSON(r *meshpb.MembersResponse) membersJSON {
	out := membersJSON{
		Self:       r.GetSelf(),
		Cluster:    r.GetCluster(),
		Period:     r.GetPeriod().AsDuration().String(),
		ViewDigest: fmt.Sprintf("%016x", r.GetViewDigest()),
		Converged:  r.GetConverged(),
		Members:    []memberJSON{},
	}
	for _, m := range r.GetMembers() {
		out.Members = append(out.Members, memberJSON{
			Addr:   m.GetAddr(),
			Name:   m.GetMeta().GetName(),
			Tags:   nonNil(m.GetMeta().GetTags()),
			Status: agent.StateName(m.GetState()),
		})
	}
	return out
}

func eventToJSON(ev *meshpb.WatchEvent) eventJSON {
	return eventJSON{
		Time:    ev.GetTime().AsTime().Local(),
		Type:    eventName(ev.GetType()),
		Addr:    ev.GetAddr(),
		Name:    ev.GetMeta().GetName(),
		Tags:    nonNil(ev.GetMeta().GetTags()),
		Dropped: ev.GetDropped(),
	}
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func eventName(t meshpb.EventType) string {
	switch t {
	case meshpb.EventType_EVENT_TYPE_JOIN:
		return "join"
	case meshpb.EventType_EVENT_TYPE_UPDATE:
		return "update"
	case meshpb.EventType_EVENT_TYPE_LEAVE:
		return "leave"
	case meshpb.EventType_EVENT_TYPE_FAILED:
		return "failed"
	}
	return "unknown"
}

// formatTags prints tags sorted as "k=v,k2=v2", or "-" when there are none.
func formatTags(tags map[string]string) string {
	if len(tags) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(tags)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", k, tags[k])
	}
	return b.String()
}

// printMembers prints the members table with its header.
func printMembers(w io.Writer, r *meshpb.MembersResponse) {
	counts := map[meshpb.State]int{}
	for _, m := range r.GetMembers() {
		counts[m.GetState()]++
	}
	conv := "NOT converged"
	if r.GetConverged() {
		conv = "converged"
	}
	cluster := ""
	if r.GetCluster() != "" {
		cluster = fmt.Sprintf("cluster %s · ", r.GetCluster())
	}
	fmt.Fprintf(w, "%sview %016x · %s · %d alive, %d failed, %d left · period %v\n", cluster, r.GetViewDigest(), conv,
		counts[meshpb.State_STATE_ALIVE], counts[meshpb.State_STATE_FAILED], counts[meshpb.State_STATE_LEFT], r.GetPeriod().AsDuration())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tNAME\tSTATUS\tTAGS")
	for _, m := range r.GetMembers() {
		addr := m.GetAddr()
		if addr == r.GetSelf() {
			addr += " (self)"
		}
		name := m.GetMeta().GetName()
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", addr, name, agent.StateName(m.GetState()), formatTags(m.GetMeta().GetTags()))
	}
	tw.Flush()
}

// formatEvent prints one event as a line of `mesh watch`.
func formatEvent(ev *meshpb.WatchEvent) string {
	name := ev.GetMeta().GetName()
	if name == "" {
		name = "-"
	}
	return fmt.Sprintf("%s  %-6s  %s  name=%s  tags=%s", ev.GetTime().AsTime().Local().Format("15:04:05.000"),
		eventName(ev.GetType()), ev.GetAddr(), name, formatTags(ev.GetMeta().GetTags()))
}
