package client

import "testing"

func TestDecodeLeaseEventNamesEachKindAndSkipsUnknownOnes(t *testing.T) {
	view := `{"namespace":"ns","name":"a","state":"held","fencingToken":3}`
	for _, kind := range []EventType{EventAdded, EventModified, EventDeleted} {
		ev, ok, err := decodeLeaseEvent(sseEvent{Event: string(kind), Data: view})
		if err != nil || !ok || ev.Type != kind || ev.Lease.Name != "a" || ev.Lease.FencingToken != 3 {
			t.Fatalf("%s: %+v %v %v", kind, ev, ok, err)
		}
	}
	ev, ok, err := decodeLeaseEvent(sseEvent{Event: "bookmark", Data: `{"initialEventsEnd":true}`})
	if err != nil || !ok || ev.Type != EventInitialEventsEnd {
		t.Fatalf("bookmark: %+v %v %v", ev, ok, err)
	}
	if _, ok, err := decodeLeaseEvent(sseEvent{Event: "lease", Data: view}); ok || err != nil {
		t.Fatalf("an unknown event is skipped: %v %v", ok, err)
	}
	if _, _, err := decodeLeaseEvent(sseEvent{Event: "added", Data: "{"}); err == nil {
		t.Fatal("a bad view is an error")
	}
}
