package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gossipmesh/mesh/meshpb"
)

var testView = &meshpb.MembersResponse{
	Self:       "127.0.0.1:7946",
	ViewDigest: 0x00d6de2226be20e1,
	Converged:  true,
	Period:     durationpb.New(time.Second),
	Members: []*meshpb.Member{
		{Addr: "127.0.0.1:7946", Meta: &meshpb.PeerMeta{Name: "a", Tags: map[string]string{"zone": "b", "role": "web"}}},
		{Addr: "127.0.0.1:7947", Meta: &meshpb.PeerMeta{Name: "b"}, State: meshpb.State_STATE_FAILED},
		{Addr: "127.0.0.1:7948", State: meshpb.State_STATE_LEFT},
	},
}

func TestPrintMembers(t *testing.T) {
	var b bytes.Buffer
	printMembers(&b, testView)
	want := `view 00d6de2226be20e1 · converged · 1 alive, 1 failed, 1 left · period 1s
ADDRESS                NAME  STATUS  TAGS
127.0.0.1:7946 (self)  a     alive   role=web,zone=b
127.0.0.1:7947         b     failed  -
127.0.0.1:7948         -     left    -
`
	if b.String() != want {
		t.Errorf("printMembers:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestMembersJSON(t *testing.T) {
	got, err := json.Marshal(membersToJSON(testView))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"self":"127.0.0.1:7946","cluster":"","period":"1s","view_digest":"00d6de2226be20e1","converged":true,"members":[` +
		`{"addr":"127.0.0.1:7946","name":"a","tags":{"role":"web","zone":"b"},"status":"alive"},` +
		`{"addr":"127.0.0.1:7947","name":"b","tags":{},"status":"failed"},` +
		`{"addr":"127.0.0.1:7948","name":"","tags":{},"status":"left"}]}`
	if string(got) != want {
		t.Errorf("members JSON:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatEvent(t *testing.T) {
	at := time.Date(2026, 1, 2, 15, 4, 5, 123e6, time.Local)
	ev := &meshpb.WatchEvent{Type: meshpb.EventType_EVENT_TYPE_LEAVE, Addr: "127.0.0.1:7947", Meta: &meshpb.PeerMeta{Name: "b"}, Time: timestamppb.New(at)}
	if got, want := formatEvent(ev), "15:04:05.123  leave   127.0.0.1:7947  name=b  tags=-"; got != want {
		t.Errorf("formatEvent = %q, want %q", got, want)
	}
}
