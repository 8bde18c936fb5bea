package archive

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/walsnap/walsnap/internal/walrec"
)

// TestReadFileStat: the stat readFile returns identifies the bytes it
// read — whenever the file's stat is still that one, the file holds those
// bytes — even when the file is rewritten in place within the tick of the
// filesystem's clock in which it was written (same size, and on kernels
// without fine-grained ctimes after a stat, the same ctime: there only the
// comparison after the tick, TestSameBytes, tells the versions apart).
func TestReadFileStat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	orig := bytes.Repeat([]byte("walsnap "), 256<<10) // 2 MiB
	other := bytes.Repeat([]byte("changed "), 256<<10)
	proven, rewritten := 0, 0
	for i := range 40 {
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		data, stat, err := readFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, orig) {
			t.Fatal("read other bytes")
		}
		if i%2 == 1 {
			// Rewritten in place right after the read: most often within
			// the same tick, when the ctime does not move.
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(other, 0)
			f.Close()
			rewritten++
		}
		st := stat()
		if st == (walrec.Stat{}) {
			continue
		}
		proven++
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		now, _ := os.ReadFile(path)
		if walrec.StatOf(fi) == st && !bytes.Equal(now, data) {
			t.Fatalf("round %d: the stat claims the bytes read, the file holds others", i)
		}
	}
	// An untouched file is always proven (this filesystem keeps
	// sub-second timestamps).
	if proven < 40-rewritten {
		t.Fatalf("only %d of %d untouched reads proven", proven, 40-rewritten)
	}
}

// TestSameBytes: the comparison readFile makes once the tick has passed.
func TestSameBytes(t *testing.T) {
	data := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 500_000) // 3.5 MB: several chunks
	path := filepath.Join(t.TempDir(), "f")
	check := func(what string, content []byte, want bool) {
		t.Helper()
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got := sameBytes(f, data); got != want {
			t.Fatalf("%s: sameBytes %v, want %v", what, got, want)
		}
	}
	check("the same bytes", data, true)
	for _, off := range []int{0, 1 << 20, len(data) - 1} {
		flipped := bytes.Clone(data)
		flipped[off] ^= 0x40
		check(fmt.Sprintf("a byte flipped at %d", off), flipped, false)
	}
	check("shorter", data[:len(data)-1], false)
	check("longer", append(bytes.Clone(data), 0), false)
	check("empty", nil, false)
}
