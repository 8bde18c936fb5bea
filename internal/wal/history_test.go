package wal

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseHistory(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []HistoryEntry
	}{
		{"one entry", "1\t0/3000000\tno recovery target specified\n",
			[]HistoryEntry{{1, 0x3000000, "no recovery target specified"}}},
		{"no trailing newline", "1\t0/3000000\tno recovery target specified",
			[]HistoryEntry{{1, 0x3000000, "no recovery target specified"}}},
		// PostgreSQL copies the parent's history and adds "\n" before the new line.
		{"inherited with blank line",
			"1\t0/3000000\tno recovery target specified\n\n2\t16/B374D848\tbefore 2024-05-01 12:00:00+00\n",
			[]HistoryEntry{
				{1, 0x3000000, "no recovery target specified"},
				{2, 0x16B374D848, "before 2024-05-01 12:00:00+00"},
			}},
		{"comments and indentation",
			"# written by hand\n  1\t0/3000000\tat restore point \"before upgrade\"\n\t# another\n\n3\t0/5000028\n",
			[]HistoryEntry{
				{1, 0x3000000, `at restore point "before upgrade"`},
				{3, 0x5000028, ""},
			}},
		{"reason with tab", "5\t1/0\tbefore\ttab\n",
			[]HistoryEntry{{5, 1 << 32, "before\ttab"}}},
		{"lower-case LSN", "1\t0/a000000\tx\n",
			[]HistoryEntry{{1, 0xA000000, "x"}}},
	}
	for _, tt := range tests {
		got, err := ParseHistory([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestParseHistoryErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", "no entries"},
		{"\n\n# only comments\n", "no entries"},
		{"1 0/3000000 reason\n", "line 1: want parent timeline"},
		{"1\n", "line 1: want parent timeline"},
		{"0\t0/3000000\tx\n", "line 1: invalid parent timeline \"0\""},
		{"-1\t0/3000000\tx\n", "line 1: invalid parent timeline"},
		{"x\t0/3000000\tx\n", "line 1: invalid parent timeline"},
		{"4294967296\t0/3000000\tx\n", "line 1: invalid parent timeline"},
		{"1\t0/3000000\tx\n\n1\t0/4000000\ty\n", "line 3: parent timeline 1 does not follow 1"},
		{"2\t0/3000000\tx\n1\t0/4000000\ty\n", "line 2: parent timeline 1 does not follow 2"},
		{"1\t0:3000000\tx\n", "line 1: invalid LSN"},
		{"1\t0/3000000\tx\n2\t\tx\n", "line 2: invalid LSN"},
		{"1\t0/123456789\tx\n", "line 1: invalid LSN"},
	}
	for _, tt := range tests {
		got, err := ParseHistory([]byte(tt.in))
		if err == nil {
			t.Errorf("ParseHistory(%q) = %+v, want error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseHistory(%q) error %q, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestFormatHistory(t *testing.T) {
	entries := []HistoryEntry{
		{1, 0x3000000, "no recovery target specified"},
		{2, 0x16B374D848, ""},
	}
	got, err := formatHistory(entries)
	if err != nil {
		t.Fatal(err)
	}
	want := "1\t0/3000000\tno recovery target specified\n2\t16/B374D848\t\n"
	if string(got) != want {
		t.Errorf("formatHistory = %q, want %q", got, want)
	}
	back, err := ParseHistory(got)
	if err != nil || !reflect.DeepEqual(back, entries) {
		t.Errorf("round trip = %+v, %v", back, err)
	}

	for _, bad := range [][]HistoryEntry{
		nil,
		{{0, 0, "x"}},
		{{2, 0, "x"}, {2, 1, "y"}},
		{{1, 0, "line\nbreak"}},
	} {
		if _, err := formatHistory(bad); err == nil {
			t.Errorf("formatHistory(%+v) succeeded, want error", bad)
		}
	}
}
