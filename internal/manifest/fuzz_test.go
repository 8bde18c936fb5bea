package manifest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzParse: a manifest from the repository is outside input (a damaged or
// hostile object). Parse never panics, accepts only what Validate accepts,
// and what it accepts survives a marshal round trip; decoding the payload
// never panics either.
func FuzzParse(f *testing.F) {
	m := &Manifest{FormatVersion: FormatVersion, ID: "20261124T020000Z", Provider: ProviderFiles, Status: StatusComplete,
		StartLSN: 0x2000028, StopLSN: 0x2000138, Timeline: 1, SystemID: 7301234567890123456, SegmentSize: 16 << 20,
		StartTime: time.Unix(1795000000, 0).UTC(), StopTime: time.Unix(1795000090, 0).UTC(),
		BackupLabel: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n", Payload: json.RawMessage(`{"parts":[],"files":0}`)}
	seed, _ := json.Marshal(m)
	f.Add(seed)
	f.Add([]byte(`{"format_version":1,"id":"x","provider":"ebs","status":"pending","system_identifier":"1","wal_segment_size":16777216,"payload":{"snapshots":[{"snapshot_id":"snap-1"}]}}`))
	f.Add([]byte(`{"format_version":1,"id":"..","provider":"files"}`))
	f.Add([]byte(`{"payload": 7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(data)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(again)
		if err != nil {
			t.Fatalf("re-parse of an accepted manifest: %v", err)
		}
		if !reflect.DeepEqual(normal(back), normal(got)) {
			t.Fatalf("round trip changed the manifest:\n%+v\n%+v", got, back)
		}
		got.DecodePayload()
	})
}

// normal drops what a JSON round trip may legitimately re-encode.
func normal(m *Manifest) Manifest {
	c := *m
	c.Payload = nil
	c.StartTime, c.StopTime = c.StartTime.UTC(), c.StopTime.UTC()
	return c
}
