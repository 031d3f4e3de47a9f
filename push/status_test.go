package push

import "testing"

func TestPendingWhy(t *testing.T) {
	edges := []EdgeStatus{
		{Edge: "a", Health: "up", Serving: 2},
		{Edge: "b", Health: "up", Serving: 1, Error: "disk_full: no space left on device"},
		{Edge: "c", Health: "up", Serving: 1},
	}
	for _, c := range []struct {
		pending []string
		want    string
	}{
		{nil, ""},
		{[]string{"c"}, "c"},
		{[]string{"b"}, "b (disk_full: no space left on device)"},
		{[]string{"b", "c"}, "b (disk_full: no space left on device), c"},
		{[]string{"gone"}, "gone"},
	} {
		st := Status{Edges: edges, Pending: c.pending}
		if got := st.PendingWhy(); got != c.want {
			t.Errorf("PendingWhy with pending %q = %q, want %q", c.pending, got, c.want)
		}
	}
}
