package state

import (
	"testing"
	"time"
)

// TestPurgeReportsAnnounced: a report reaches a subscriber ahead of the
// bucket, which has it too; the subscriber names the edge by the subject
// the report came on, whatever the report says.
func TestPurgeReportsAnnounced(t *testing.T) {
	s := openStore(t)
	got := make(chan PurgeApplied, 4)
	sub, err := s.SubscribePurgesApplied(func(a PurgeApplied) { got <- a })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	s.js.Conn().Flush()
	if err := s.ReportPurgeApplied(t.Context(), PurgeApplied{Edge: "e1", Version: 7, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if a := recvApplied(t, got); a.Edge != "e1" || a.Version != 7 {
		t.Errorf("announced %+v, want e1 at 7", a)
	}
	reports, err := s.PurgesApplied(t.Context())
	if err != nil || len(reports) != 1 || reports[0].Version != 7 {
		t.Errorf("the bucket holds %+v (%v), want e1 at 7", reports, err)
	}
	s.js.Conn().Publish(AppliedSubject("e2"), []byte(`{"edge":"e1","version":99}`))
	if a := recvApplied(t, got); a.Edge != "e2" || a.Version != 99 {
		t.Errorf("an announcement on e2's subject naming e1: %+v, want it taken as e2's", a)
	}
}

func recvApplied(t *testing.T, ch <-chan PurgeApplied) PurgeApplied {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("no announcement within 5s")
		return PurgeApplied{}
	}
}
