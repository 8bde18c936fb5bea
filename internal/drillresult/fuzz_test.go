package drillresult

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzParse: a stored drill result is outside input (a damaged object, or
// one a newer walsnap wrote). Parse never panics, refuses a result without
// an id or a time, and what it accepts survives a marshal round trip.
func FuzzParse(f *testing.F) {
	r := Result{ID: "20261201T171719.615Z-d7d661f0", Time: time.Unix(1795000000, 0).UTC(), Seconds: 2.1, OK: true,
		Backup: Backup{ID: "20261201T171717.487Z-bff3c155", Provider: "files", StopLSN: "0/2000100", PGVersion: 160004},
		Target: "end of archived WAL", Reached: &Reached{LSN: "0/6000000", Segment: "000000010000000000000005"}, RecoverySeconds: 1.9,
		Phases: []Phase{{Name: PhaseMaterialize, Seconds: 0.9, Steps: []Step{{Name: "unpack", Seconds: 0.8}}}},
		Replay: &Replay{Segments: 4, Bytes: 64 << 20, BytesPerSecond: 1 << 26}, Checks: []Check{{Name: "connections", Status: Pass}}}
	seed, _ := json.Marshal(r)
	f.Add(seed)
	f.Add([]byte(`{"id":"x","time":"2026-12-01T00:00:00Z","ok":false,"error":"gap"}`))
	f.Add([]byte(`{"id":"","time":"2026-12-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"x","phases":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(data)
		if err != nil {
			return
		}
		if got.ID == "" || got.Time.IsZero() {
			t.Fatalf("Parse accepted a result without id or time: %+v", got)
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(again)
		if err != nil {
			t.Fatalf("re-parse of an accepted result: %v", err)
		}
		if !reflect.DeepEqual(back, got) {
			t.Fatalf("round trip changed the result:\n%+v\n%+v", got, back)
		}
	})
}

// TestPhase finds a phase by name, and nothing for a phase that did not run.
func TestPhase(t *testing.T) {
	r := &Result{Phases: []Phase{{Name: PhaseChoose, Seconds: 1}, {Name: PhaseReplay, Seconds: 2}}}
	if p := r.Phase(PhaseReplay); p == nil || p.Seconds != 2 {
		t.Errorf("Phase(replay) = %+v", p)
	}
	if p := r.Phase(PhaseChecks); p != nil {
		t.Errorf("Phase(checks) of a drill that did not check = %+v", p)
	}
}
