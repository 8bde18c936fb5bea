package restore

import (
	"testing"
)

// FuzzParseTarget: the recovery target comes from the command line. Any
// input is parsed or refused without a panic; an accepted target writes
// settings that parse back to the same target.
func FuzzParseTarget(f *testing.F) {
	f.Add("2026-11-24 15:40:19+00", "", "", "", false, "promote", "latest")
	f.Add("", "0/5000028", "", "", false, "pause", "3")
	f.Add("", "", "1234", "", false, "", "current")
	f.Add("", "", "", "before-upgrade", false, "shutdown", "")
	f.Add("2026-11-24 15:40", "", "", "", true, "", "0")
	f.Fuzz(func(t *testing.T, tm, lsn, xid, name string, immediate bool, action, timeline string) {
		tg, err := ParseTarget(TargetSpec{Time: tm, LSN: lsn, XID: xid, Name: name, Immediate: immediate, Action: action, Timeline: timeline})
		if err != nil {
			return
		}
		back := TargetSpec{Action: tg.Action, Timeline: tg.Timeline.String()}
		for _, kv := range tg.Settings() {
			switch kv[0] {
			case "recovery_target_time":
				back.Time = kv[1]
			case "recovery_target_lsn":
				back.LSN = kv[1]
			case "recovery_target_xid":
				back.XID = kv[1]
			case "recovery_target_name":
				back.Name = kv[1]
			case "recovery_target":
				back.Immediate = true
			}
		}
		again, err := ParseTarget(back)
		if err != nil {
			t.Fatalf("settings %v of an accepted target do not parse: %v", tg.Settings(), err)
		}
		if again.Kind != tg.Kind || !again.Time.Equal(tg.Time) || again.LSN != tg.LSN || again.XID != tg.XID || again.Name != tg.Name || again.Timeline != tg.Timeline {
			t.Fatalf("round trip: %+v -> %+v", tg, again)
		}
	})
}
