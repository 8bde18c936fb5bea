// Package walrec owns the records that let a wal-push or wal-fetch call
// be answered from the spool without the repository: the background
// archiver's record of a file it archived (Pushed) and the standing
// prefetcher's commit record of a segment it downloaded and verified
// (Prefetched), with the checks that prove, at the moment of the call,
// that the file on disk still holds the bytes the record describes.
//
// Both walsnap and its small front end walsnap-pg read them through this
// package: walsnap-pg answers PostgreSQL from a record that passes every
// check here and hands every other call to walsnap, so this package must
// stay small (it is linked into a binary whose start-up is the cost of a
// served call).
package walrec

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/walsnap/walsnap/internal/fsutil"
	"github.com/walsnap/walsnap/internal/spool"
	"github.com/walsnap/walsnap/internal/wal"
)

// Format is the version of the records' format; a record of another
// version is not used.
const Format = 2

// Spool layout: the archiver's records live in <spool>/pushed/<name>, the
// prefetcher's files in <spool>/prefetch/<name> with their commit record
// <name>.ok, and the segment PostgreSQL asked for last in
// <spool>/prefetch/.want. Each helper holds an flock on its lock file
// while it runs, and on the file it works on (see BusySuffix; the
// prefetcher on <name>.part, then <name> until its record is written).
const (
	PushedDir    = "pushed"
	PrefetchDir  = "prefetch"
	RecordSuffix = ".ok"
	WantFile     = ".want"
	ArchiverLock = "archiver.lock"
	// ArchiverRetire (in the spool) and PrefetcherRetire (in the prefetch
	// directory) hold the settings stamp of a helper that a call with
	// other settings found at work: that helper leaves.
	ArchiverRetire   = "archiver.retire"
	PrefetcherRetire = ".retire"
	// BusySuffix names the lock the archiver holds on pushed/<name>.busy
	// while it uploads name.
	BusySuffix     = ".busy"
	PrefetcherLock = ".lock"
)

// Trust is how long a push record is believed without asking the
// repository whether it still holds the object: the archiver wrote the
// record right after the repository confirmed the upload.
const Trust = 5 * time.Minute

// Stat identifies one version of a file: its device, inode, size and
// timestamps. PostgreSQL never rewrites a segment once it is .ready, and
// any write, truncation or replacement of a file changes its inode or its
// ctime, which no user can set. An unchanged Stat therefore proves that
// the bytes are those read when it was taken — provided the change could
// not fall into the same tick of the filesystem's clock as the Stat (see
// Settle).
type Stat struct {
	Dev, Ino, Size, MtimeNs, CtimeNs int64
}

// StatOf returns the Stat of fi (zero if the platform has none).
func StatOf(fi os.FileInfo) Stat {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Stat{}
	}
	return Stat{Dev: int64(st.Dev), Ino: int64(st.Ino), Size: st.Size,
		MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano()}
}

// fine reports whether the filesystem keeps sub-second timestamps for the
// file: on one that keeps seconds only, a change within the same second
// leaves the ctime as it was.
func (s Stat) fine() bool { return s.CtimeNs%int64(time.Second) != 0 }

// Settle waits until the kernel's clock for file timestamps has moved past
// the ctime of s, so that any later change of the file gets a ctime that
// differs from s's. It reports false (at once) when the filesystem keeps
// whole seconds only: then a Stat proves nothing and the bytes must be
// compared.
func Settle(s Stat) bool {
	if s == (Stat{}) || !s.fine() {
		return false
	}
	for range 200 {
		if Settled(s) {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// Settled reports, without waiting, whether the kernel's clock for file
// timestamps has moved past the ctime of s (false too where Settle gives
// up at once).
func Settled(s Stat) bool {
	if s == (Stat{}) || !s.fine() {
		return false
	}
	var now unix.Timespec
	return unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &now) == nil && now.Nano() > s.CtimeNs
}

// Log says how the helper that wrote a record logs (its log.format and
// whether it logs at info), so that a call answered from the record logs
// its line the same way.
type Log struct {
	Format string `json:"format"`
	Info   bool   `json:"info"`
}

// Pushed is the background archiver's record of a file it archived:
// enough to verify, on PostgreSQL's own call, that the file is unchanged
// and the object is in the configured repository.
type Pushed struct {
	Format int    `json:"format"`
	Name   string `json:"name"`
	Repo   string `json:"repo"`
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Stat is the file's as it was read, taken after Settle: zero when
	// the read cannot be tied to one version of the file.
	Stat Stat `json:"stat"`
	// Settings is the callstamp of the settings the archiver ran with
	// ("" when they cannot be stamped).
	Settings string `json:"settings,omitempty"`
	Log      Log    `json:"log"`
}

// Prefetched commits a prefetched segment: the prefetcher writes it (as
// <name>.ok) only after the file was downloaded, verified against the
// repository (size, SHA-256, page header, system identifier) and fsynced.
type Prefetched struct {
	Format      int    `json:"format"`
	Name        string `json:"name"`
	Repo        string `json:"repo"`
	Key         string `json:"key"`
	SystemID    uint64 `json:"system_identifier,string"`
	SegmentSize uint64 `json:"wal_segment_size"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	CRC32C      uint32 `json:"crc32c"`
	Stat        Stat   `json:"stat"`
	// Settled: Stat was taken after Settle and the bytes were read back
	// and matched CRC32C after it, so an unchanged Stat alone proves the
	// file. Otherwise the bytes are checked at every serve.
	Settled  bool   `json:"settled"`
	Settings string `json:"settings,omitempty"`
	Log      Log    `json:"log"`
}

// castagnoli is the CRC-32C table of the prefetch records, made on first
// use: making it takes about a millisecond, a sixth of a call walsnap-pg
// answers, which needs it only where a record is not settled (a
// filesystem with whole-second timestamps).
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// NewCRC returns the CRC-32C hash of the prefetch records.
func NewCRC() hash.Hash32 { return crc32.New(castagnoli()) }

// ReadPushed reads the archiver's record at path. It refuses a record of
// another format or for another file name.
func ReadPushed(path, name string) (Pushed, os.FileInfo, error) {
	var rec Pushed
	fi, err := readRecord(path, &rec)
	if err == nil {
		err = recordFor(rec.Format, rec.Name, name)
	}
	return rec, fi, err
}

// ReadPrefetched reads the commit record at path. It refuses a record of
// another format or for another file name.
func ReadPrefetched(path, name string) (Prefetched, os.FileInfo, error) {
	var rec Prefetched
	fi, err := readRecord(path, &rec)
	if err == nil {
		err = recordFor(rec.Format, rec.Name, name)
	}
	return rec, fi, err
}

// recordFor refuses a record of another format or for another file.
func recordFor(format int, recName, name string) error {
	if format != Format || recName != name {
		return fmt.Errorf("record is not one for %s", name)
	}
	return nil
}

// readRecord decodes a small JSON record file.
func readRecord(path string, v any) (os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil {
		return fi, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fi, fmt.Errorf("unreadable record: %w", err)
	}
	return fi, nil
}

// Private reports whether fi, a record or a spool directory, belongs to
// this process's user and no one else may write it: only then can a
// record be trusted without asking the repository.
func Private(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid() && fi.Mode().Perm()&0o022 == 0
}

// Unchanged reports whether the file at path is still the version of
// stat s (and s is a real one).
func Unchanged(path string, s Stat) bool {
	fi, err := os.Stat(path)
	return err == nil && s != (Stat{}) && StatOf(fi) == s
}

// CheckPrefetched proves that the open file f holds the bytes rec
// describes: the same Stat, and — unless the record is Settled — the
// same CRC-32C and a page header for this segment of this cluster.
func CheckPrefetched(f *os.File, rec Prefetched) error {
	fn, err := wal.ParseFileName(rec.Name, rec.SegmentSize)
	if err != nil {
		return err
	}
	if rec.Size != int64(rec.SegmentSize) {
		return fmt.Errorf("record size %d is not the segment size %d", rec.Size, rec.SegmentSize)
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st := StatOf(fi); st == (Stat{}) || st != rec.Stat {
		return errors.New("the file changed since it was verified (stat identity differs)")
	}
	if rec.Settled {
		return nil
	}
	n, sum, head, err := CRC(f)
	if err != nil {
		return err
	}
	if n != rec.Size || sum != rec.CRC32C {
		return fmt.Errorf("content differs from the verified bytes (%d bytes, crc32c %08x; verified %d bytes, crc32c %08x)", n, sum, rec.Size, rec.CRC32C)
	}
	_, err = wal.CheckSegmentHeader(fn.Segment, rec.SegmentSize, head, rec.SystemID)
	return err
}

// CRC reads r to its end and returns its length, CRC-32C and first
// wal.LongHeaderSize bytes.
func CRC(r io.Reader) (n int64, sum uint32, head []byte, err error) {
	h := NewCRC()
	buf := make([]byte, 1<<20)
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if len(head) < wal.LongHeaderSize {
				head = append(head, buf[:min(k, wal.LongHeaderSize-len(head))]...)
			}
			h.Write(buf[:k])
			n += int64(k)
		}
		if rerr == io.EOF {
			return n, h.Sum32(), head, nil
		}
		if rerr != nil {
			return n, 0, nil, rerr
		}
	}
}

// pickupWait bounds how long a call waits for a running archiver to take
// the file PostgreSQL asks to archive (it watches the spool and takes a
// called file at once when it has a free upload slot).
const pickupWait = 100 * time.Millisecond

// CallSuffix names the marker pushed/<name>.call, with which a call asks
// the running archiver for its file: on a server whose archiver keeps up
// (one .ready file at a time) the archiver uploads a file only when a call
// asks for it, so that it never archives what PostgreSQL no longer asks
// walsnap to (archive_command changed). It may have read and compressed
// the file already, holding its busy lock, and waits for the marker to
// upload it.
const CallSuffix = ".call"

// AwaitPickup asks the archiver that serves spool, if one runs and the
// file name of walDir is ready (archive_status/<name>.ready) and has no
// record yet, for the file (a CallSuffix marker, created for own), and
// waits until it has taken it (its busy lock or its record exists), for
// at most pickupWait. It reports whether the archiver has it; the caller
// then waits for the busy lock and uses the record, or does the work
// itself.
func AwaitPickup(own spool.Owner, sdir, walDir, name string) bool {
	if !fsutil.IsLocked(filepath.Join(sdir, ArchiverLock)) {
		return false
	}
	if _, err := os.Stat(filepath.Join(walDir, "archive_status", name+".ready")); err != nil {
		return false
	}
	rec := PushedPath(sdir, name)
	if _, err := os.Stat(rec); err == nil {
		return true
	}
	// Asked for even when the archiver holds the file already: it may be
	// waiting for a call to upload it.
	f, err := own.CreateExcl(rec + CallSuffix)
	switch {
	case err == nil:
		f.Close()
	case !errors.Is(err, os.ErrExist):
		return false
	}
	for deadline := time.Now().Add(pickupWait); ; time.Sleep(500 * time.Microsecond) {
		for _, p := range []string{rec, rec + BusySuffix} {
			if _, err := os.Stat(p); err == nil {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// PushedPath returns the path of name's push record in spool.
func PushedPath(spool, name string) string { return filepath.Join(spool, PushedDir, name) }
