package client

import (
	"os"
	"strings"
	"sync"
	"time"
)

// APIKeyFileRecheck is how often, at most, [WithAPIKeyFile] reads its file
// again.
const APIKeyFileRecheck = time.Second

// WithAPIKeyFile sends the key held in the file at path, read again when
// it was last read [APIKeyFileRecheck] ago or more, so a rotating
// projected service-account token (audience berth) or a rotated Secret
// keeps working without a restart. Surrounding whitespace is ignored. While
// the file is missing or empty (the kubelet swaps it atomically, but a
// Secret may be briefly absent), the last key read is sent. Until a key has
// been read, no Authorization header is sent and the server answers 401.
func WithAPIKeyFile(path string) Option {
	f := &keyFile{path: path, now: time.Now}
	return WithAPIKeyFunc(f.current)
}

// keyFile is the file and the last good key read from it.
type keyFile struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	key    string
	readAt time.Time
}

func (f *keyFile) current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.key != "" && now.Sub(f.readAt) < APIKeyFileRecheck {
		return f.key
	}
	f.readAt = now
	if data, err := os.ReadFile(f.path); err == nil {
		if key := strings.TrimSpace(string(data)); key != "" {
			f.key = key
		}
	}
	return f.key
}
