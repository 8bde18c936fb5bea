package repo

import (
	"encoding/json"
	"testing"

	"github.com/walsnap/walsnap/internal/wal"
)

// FuzzParseIdentity: walsnap.json comes from the store. ParseIdentity
// never panics, and what it accepts is a valid identity that round trips.
func FuzzParseIdentity(f *testing.F) {
	f.Add([]byte(`{"format_version":1,"system_identifier":"7301234567890123456","wal_segment_size":16777216,"pg_major":15,"created_at":"2026-11-24T02:00:00Z"}`))
	f.Add([]byte(`{"format_version":1,"system_identifier":7301234567890123456,"wal_segment_size":1}`))
	f.Add([]byte(`{"format_version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := ParseIdentity(data)
		if err != nil {
			return
		}
		if id.SystemID == 0 || id.FormatVersion != FormatVersion {
			t.Fatalf("accepted an invalid identity %+v", id)
		}
		again, _ := json.Marshal(id)
		back, err := ParseIdentity(again)
		if err != nil || !back.CreatedAt.Equal(id.CreatedAt) || back.SystemID != id.SystemID || back.SegmentSize != id.SegmentSize {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
	})
}

// FuzzIsKeyOf: any key and name; never panics, and a key built for a
// name is recognised.
func FuzzIsKeyOf(f *testing.F) {
	f.Add("wal/00000001/000000010000000000000002.zst", "000000010000000000000002")
	f.Add("wal/00000002.history", "00000002.history")
	f.Fuzz(func(t *testing.T, key, name string) {
		IsKeyOf(key, name)
		if _, err := wal.Classify(name); err == nil && !IsKeyOf(WALKey(name, ".zst"), name) {
			t.Fatalf("WALKey(%q) not recognised", name)
		}
	})
}
