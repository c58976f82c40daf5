package client

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKeyFileIsReadAgainAfterTheRecheckAndKeepsTheLastGoodKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clock := time.Unix(1000, 0)
	f := &keyFile{path: path, now: func() time.Time { return clock }}

	write("first\n")
	if got := f.current(); got != "first" {
		t.Fatalf("first read: %q", got)
	}
	write("second")
	clock = clock.Add(APIKeyFileRecheck / 2)
	if got := f.current(); got != "first" {
		t.Fatalf("read again before the recheck interval: %q", got)
	}
	clock = clock.Add(APIKeyFileRecheck)
	if got := f.current(); got != "second" {
		t.Fatalf("after the recheck interval: %q", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(APIKeyFileRecheck)
	if got := f.current(); got != "second" {
		t.Fatalf("a missing file must keep the last key: %q", got)
	}
	write(" \n")
	clock = clock.Add(APIKeyFileRecheck)
	if got := f.current(); got != "second" {
		t.Fatalf("an empty file must keep the last key: %q", got)
	}
}

func TestKeyFileThatNeverHeldAKeySendsNone(t *testing.T) {
	f := &keyFile{path: filepath.Join(t.TempDir(), "absent"), now: time.Now}
	if got := f.current(); got != "" {
		t.Fatalf("got %q", got)
	}
}
