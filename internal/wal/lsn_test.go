package wal

import (
	"encoding/json"
	"testing"
)

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in   string
		want LSN
	}{
		{"0/0", 0},
		{"0/28", 0x28},
		{"0/00000028", 0x28},
		{"16/B374D848", 0x16B374D848},
		{"16/b374d848", 0x16B374D848},
		{"00000016/B374D848", 0x16B374D848},
		{"1/0", 1 << 32},
		{"FFFFFFFF/FFFFFFFF", ^LSN(0)},
	}
	for _, tt := range tests {
		got, err := ParseLSN(tt.in)
		if err != nil {
			t.Errorf("ParseLSN(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseLSN(%q) = %#x, want %#x", tt.in, uint64(got), uint64(tt.want))
		}
	}
}

func TestParseLSNErrors(t *testing.T) {
	for _, in := range []string{
		"", "/", "0/", "/0", "0", "16B374D848",
		"123456789/0", "0/123456789",
		"0/0/0", "g/0", "0/g", " 0/0", "0/0 ", "+1/0", "-1/0", "0x1/0", "1-0", "0/0\n", "１/0",
	} {
		if l, err := ParseLSN(in); err == nil {
			t.Errorf("ParseLSN(%q) = %v, want error", in, l)
		}
	}
}

func TestLSNString(t *testing.T) {
	tests := []struct {
		in   LSN
		want string
	}{
		{0, "0/0"},
		{0x28, "0/28"},
		{0x16B374D848, "16/B374D848"},
		{1 << 32, "1/0"},
		{^LSN(0), "FFFFFFFF/FFFFFFFF"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("LSN(%#x).String() = %q, want %q", uint64(tt.in), got, tt.want)
		}
		back, err := ParseLSN(tt.want)
		if err != nil || back != tt.in {
			t.Errorf("ParseLSN(%q) = %v, %v; want round trip to %#x", tt.want, back, err, uint64(tt.in))
		}
	}
}

func TestLSNText(t *testing.T) {
	in := struct {
		L LSN `json:"l"`
	}{L: 0x16B374D848}
	data, err := json.Marshal(in)
	if err != nil || string(data) != `{"l":"16/B374D848"}` {
		t.Fatalf("marshal: %s %v", data, err)
	}
	in.L = 0
	if err := json.Unmarshal(data, &in); err != nil || in.L != 0x16B374D848 {
		t.Fatalf("unmarshal: %v %v", in.L, err)
	}
	if err := json.Unmarshal([]byte(`{"l":"zz"}`), &in); err == nil {
		t.Fatal("bad LSN text accepted")
	}
}
