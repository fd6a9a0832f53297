package crdt_test

import (
	"maps"
	"testing"

	"github.com/gossipmesh/mesh/crdt"
)

type vv = crdt.VersionVector

func TestVersionVectorCompareTable(t *testing.T) {
	for _, tc := range []struct {
		a, b vv
		want crdt.Ordering
	}{
		{nil, nil, crdt.Equal},
		{vv{}, vv{"a": 0}, crdt.Equal},
		{vv{"a": 0}, vv{}, crdt.Equal},
		{vv{"a": 1}, vv{"a": 1}, crdt.Equal},
		{vv{"a": 1}, vv{"a": 2}, crdt.Before},
		{vv{"a": 2}, vv{"a": 1}, crdt.After},
		{vv{}, vv{"a": 1}, crdt.Before},
		{vv{"a": 1}, vv{}, crdt.After},
		{vv{"a": 1}, vv{"a": 1, "b": 1}, crdt.Before},
		{vv{"a": 1, "b": 1}, vv{"a": 1}, crdt.After},
		{vv{"a": 2}, vv{"a": 1, "b": 1}, crdt.Concurrent},
		{vv{"a": 1, "b": 1}, vv{"a": 2}, crdt.Concurrent},
		{vv{"a": 1, "b": 2}, vv{"a": 2, "b": 1}, crdt.Concurrent},
	} {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%v.Compare(%v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestOrderingString(t *testing.T) {
	for o, want := range map[crdt.Ordering]string{crdt.Equal: "equal", crdt.Before: "before", crdt.After: "after", crdt.Concurrent: "concurrent"} {
		if o.String() != want {
			t.Errorf("Ordering(%d).String() = %q, want %q", int(o), o.String(), want)
		}
	}
}

func TestVersionVectorObserveMerge(t *testing.T) {
	v := vv{}
	v.Observe("a", 0)
	if len(v) != 0 {
		t.Fatalf("Observe(a, 0) added an entry: %v", v)
	}
	v.Observe("a", 3)
	v.Observe("a", 2)
	v.Observe("a", 3)
	if !maps.Equal(v, vv{"a": 3}) {
		t.Fatalf("after Observe a=3,2,3: %v", v)
	}
	v.Merge(vv{"a": 1, "b": 4, "c": 0})
	if !maps.Equal(v, vv{"a": 3, "b": 4}) {
		t.Fatalf("after Merge: %v", v)
	}
	v.Merge(nil)
	if !maps.Equal(v, vv{"a": 3, "b": 4}) {
		t.Fatalf("after Merge(nil): %v", v)
	}
}

func TestVersionVectorCloneCoversCapped(t *testing.T) {
	v := vv{"a": 3, "b": 7}
	c := v.Clone()
	c["a"] = 9
	if v["a"] != 3 {
		t.Fatalf("Clone shares storage")
	}
	for _, tc := range []struct {
		s    crdt.Stamp
		want bool
	}{
		{st(3, "a"), true}, {st(2, "a"), true}, {st(4, "a"), false}, {st(1, "z"), false}, {st(0, "z"), true},
	} {
		if got := v.Covers(tc.s); got != tc.want {
			t.Errorf("%v.Covers(%v) = %v, want %v", v, tc.s, got, tc.want)
		}
	}
	for limit, want := range map[uint64]vv{
		0: {"a": 0, "b": 0}, 3: {"a": 3, "b": 3}, 5: {"a": 3, "b": 5}, 7: {"a": 3, "b": 7}, 100: {"a": 3, "b": 7},
	} {
		got := v.Capped(limit)
		if !maps.Equal(got, want) {
			t.Errorf("%v.Capped(%d) = %v, want %v", v, limit, got, want)
		}
		got["a"] = 99
		if v["a"] != 3 {
			t.Fatalf("Capped shares storage")
		}
	}
}
