package basebackup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/pg"
	"github.com/walsnap/walsnap/internal/spool"
)

// HoldRequest is what backup-stop sends to the holder.
type HoldRequest struct {
	Op           string   `json:"op"` // "stop" or "abort"
	Orchestrator string   `json:"orchestrator,omitempty"`
	Snapshots    []string `json:"snapshots,omitempty"`
}

// HoldReply is the holder's answer.
type HoldReply struct {
	ID string `json:"id"`
	// Status is complete, pending (the holder completes the backup once
	// its snapshots are), failed or aborted.
	Status  string `json:"status"`
	StopLSN string `json:"stop_lsn,omitempty"`
	// Snapshots are the snapshots recorded when the holder found them.
	Snapshots []string `json:"snapshots,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// HolderFiles are where a backup-start holder listens and logs: by
// default in the cluster's run directory (DESIGN.md rule 11).
type HolderFiles struct {
	Socket string
	Log    string
	// owner is who must own what is created in the run directory.
	owner spool.Owner
}

// OpenLog opens the holder's log for appending, creating it (and the run
// directory) as the cluster owner's when need be.
func (f HolderFiles) OpenLog() (*os.File, error) {
	if err := f.owner.MkdirAll(filepath.Dir(f.Log), filepath.Dir(f.Log)); err != nil {
		return nil, err
	}
	if err := f.owner.EnsureFile(f.Log); err != nil {
		return nil, err
	}
	return os.OpenFile(f.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// Holder returns the holder's files for the cluster whose data directory
// is pgdata, in its run directory (DESIGN.md rule 11). With pgdata empty
// the server is asked for its data directory.
func Holder(ctx context.Context, conn pg.ConnConfig, spoolDir, pgdata string) (HolderFiles, error) {
	if pgdata == "" {
		sess, err := pg.Connect(ctx, conn)
		if err != nil {
			return HolderFiles{}, fmt.Errorf("find the data directory (set pgdata): %w", err)
		}
		pgdata, err = sess.DataDirectory(ctx)
		sess.Close(context.WithoutCancel(ctx))
		if err != nil {
			return HolderFiles{}, fmt.Errorf("find the data directory (set pgdata): %w", err)
		}
	}
	dir, o, err := spool.EnsureRunDir(spoolDir, pgdata)
	if err != nil {
		return HolderFiles{}, err
	}
	return HolderFiles{Socket: filepath.Join(dir, "backup.sock"), Log: filepath.Join(dir, "backup-hold.log"), owner: o}, nil
}

// Hold keeps a backup open for an orchestrator whose before- and after-
// hooks run as separate processes, while a non-exclusive backup lives in
// one session. It begins the backup, calls ready with its id (or the
// error), then serves the unix socket until a stop or abort request, the
// timeout, or ctx's end; a backup never stopped is aborted (no manifest).
// The socket is gone before the final reply is sent: whoever got that
// reply finds no holder any more.
//
// With rec nil the manifest records the snapshot ids given to
// backup-stop (provider external). Otherwise rec prepares, before
// pg_backup_start, what it needs to find and describe the orchestrator's
// snapshots at backup-stop; the manifest is then rec's provider's, pending
// until the snapshots are completed, which the holder waits for after its
// reply.
func Hold(ctx context.Context, o Options, rec Recorder, socket string, timeout time.Duration, ready func(b *Backup, err error)) error {
	o.Provider = nil
	name, prepare := manifest.ProviderExternal, func(context.Context, *Job) error { return nil }
	var record Record
	if rec != nil {
		name = rec.Name()
		prepare = func(ctx context.Context, job *Job) (err error) {
			record, err = rec.PrepareRecord(ctx, job)
			return err
		}
	}
	b, err := begin(ctx, o, name, prepare)
	if err != nil {
		ready(nil, err)
		return err
	}
	defer b.Abort()
	l, err := listenUnix(socket, spool.OwnerOf(filepath.Join(b.m.PGData, "pg_wal")))
	if err != nil {
		err = fmt.Errorf("backup %s: listen on %s: %w", b.ID(), socket, err)
		ready(nil, err)
		return err
	}
	closeSocket := sync.OnceFunc(func() {
		l.Close()
		os.Remove(socket)
	})
	defer closeSocket()
	ready(b, nil)

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() { <-ctx.Done(); closeSocket() }()
	for {
		conn, err := l.Accept()
		if err != nil {
			b.log.Error("no backup-stop in time: backup aborted", "timeout", timeout)
			return fmt.Errorf("backup %s aborted: no backup-stop within %v", b.ID(), timeout)
		}
		done, err := serveHold(context.WithoutCancel(ctx), b, record, conn, closeSocket)
		if done {
			return err
		}
	}
}

// listenUnix listens on a unix socket at path, owned by o (mode 0600),
// replacing a socket that a dead holder left. A path longer than a socket
// address can hold is reached through the directory's /proc/self/fd link.
func listenUnix(path string, o spool.Owner) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: a holder is already listening", path)
		}
		os.Remove(path)
	}
	addr, closeDir, err := socketAddr(path)
	if err != nil {
		return nil, err
	}
	defer closeDir()
	l, err := net.Listen("unix", addr)
	if err != nil {
		return nil, err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false) // the short name would not unlink the real one
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	o.Chown(path)
	return l, nil
}

// socketAddr returns an address for the socket at path that fits a
// sockaddr_un (107 bytes): path itself, or /proc/self/fd/<dir fd>/<name>.
func socketAddr(path string) (string, func(), error) {
	if len(path) < 100 {
		return path, func() {}, nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), filepath.Base(path)), func() { d.Close() }, nil
}

// serveHold answers one request; done reports whether the holder is
// finished, and then the socket is closed (finish) before the reply. A
// stopped backup whose snapshots are still pending is replied to as
// pending, and completed after the reply.
func serveHold(ctx context.Context, b *Backup, record Record, conn net.Conn, finish func()) (done bool, err error) {
	defer conn.Close()
	var req HoldRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		return false, nil
	}
	reply := HoldReply{ID: b.ID()}
	var cap *Captured
	switch req.Op {
	case "abort":
		b.Abort()
		reply.Status = "aborted"
		err = fmt.Errorf("backup %s aborted on request", b.ID())
	case "stop":
		cap, err = stopHeld(ctx, b, record, req)
		if err != nil {
			b.Abort()
			reply.Status, reply.Error = manifest.StatusFailed, err.Error()
			break
		}
		reply.Status, reply.StopLSN = b.m.Status, b.m.StopLSN.String()
		if p, ok := cap.Payload.(manifest.EBSPayload); ok {
			for _, s := range p.Snapshots {
				reply.Snapshots = append(reply.Snapshots, s.SnapshotID)
			}
		}
	default:
		json.NewEncoder(conn).Encode(HoldReply{ID: b.ID(), Error: fmt.Sprintf("unknown request %q", req.Op)})
		return false, nil
	}
	finish()
	json.NewEncoder(conn).Encode(reply)
	if err == nil && cap.Complete != nil {
		conn.Close()
		_, err = b.complete(ctx, cap)
	}
	return true, err
}

// stopHeld stops a held backup and stores its manifest: the snapshot ids
// as given, or, with record, the orchestrator's snapshots it describes,
// taken between pg_backup_start and this request.
func stopHeld(ctx context.Context, b *Backup, record Record, req HoldRequest) (*Captured, error) {
	to := time.Now()
	if err := b.stop(ctx); err != nil {
		return nil, err
	}
	var cap *Captured
	if record != nil {
		var err error
		if cap, err = record(ctx, req.Orchestrator, req.Snapshots, b.started, to); err != nil {
			return nil, fmt.Errorf("backup %s: %w", b.ID(), err)
		}
	} else {
		snaps := req.Snapshots
		if snaps == nil {
			snaps = []string{}
		}
		cap = &Captured{Payload: manifest.ExternalPayload{Orchestrator: req.Orchestrator, Snapshots: snaps}}
	}
	if err := b.store(ctx, cap); err != nil {
		return nil, err
	}
	return cap, nil
}

// ErrNoHolder means no backup is being held at the socket.
var ErrNoHolder = errors.New("no backup in progress (no walsnap backup-start holder at the socket)")

// SendHold sends a request to the holder at socket and returns its reply.
func SendHold(ctx context.Context, socket string, req HoldRequest) (HoldReply, error) {
	addr, closeDir, err := socketAddr(socket)
	if err != nil {
		return HoldReply{}, fmt.Errorf("%w: %v", ErrNoHolder, err)
	}
	defer closeDir()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return HoldReply{}, fmt.Errorf("%w: %v", ErrNoHolder, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return HoldReply{}, err
	}
	var reply HoldReply
	if err := json.NewDecoder(conn).Decode(&reply); err != nil {
		return HoldReply{}, fmt.Errorf("holder did not answer: %w", err)
	}
	if reply.Error != "" {
		return reply, errors.New(reply.Error)
	}
	return reply, nil
}
