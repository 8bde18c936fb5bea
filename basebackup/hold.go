package basebackup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/walsnap/walsnap/internal/manifest"
)

// ExternalProvider names backups whose data an external orchestrator
// (N2W CPM, AWS DLM, AWS Backup, …) captured between backup-start and
// backup-stop.
const ExternalProvider = "external"

// ExternalPayload is the manifest payload of an external backup.
type ExternalPayload struct {
	Orchestrator string   `json:"orchestrator,omitempty"`
	Snapshots    []string `json:"snapshots"` // the orchestrator's snapshot ids, as given to backup-stop
}

// HoldRequest is what backup-stop sends to the holder.
type HoldRequest struct {
	Op           string   `json:"op"` // "stop" or "abort"
	Orchestrator string   `json:"orchestrator,omitempty"`
	Snapshots    []string `json:"snapshots,omitempty"`
}

// HoldReply is the holder's answer.
type HoldReply struct {
	ID      string `json:"id"`
	Status  string `json:"status"` // complete, failed or aborted
	StopLSN string `json:"stop_lsn,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Hold keeps a backup open for an orchestrator whose before- and after-
// hooks run as separate processes, while a non-exclusive backup lives in
// one session. It begins the backup, calls ready with its id (or the
// error), then serves the unix socket until a stop or abort request, the
// timeout, or ctx's end; a backup never stopped is aborted (no manifest).
func Hold(ctx context.Context, o Options, socket string, timeout time.Duration, ready func(b *Backup, err error)) error {
	o.Provider = nil
	b, err := Begin(ctx, o)
	if err != nil {
		ready(nil, err)
		return err
	}
	defer b.Abort()
	os.Remove(socket) // a holder that died leaves its socket behind
	l, err := net.Listen("unix", socket)
	if err != nil {
		err = fmt.Errorf("backup %s: listen on %s: %w", b.ID(), socket, err)
		ready(nil, err)
		return err
	}
	defer os.Remove(socket)
	defer l.Close()
	if err := os.Chmod(socket, 0o600); err != nil {
		ready(nil, err)
		return err
	}
	ready(b, nil)

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() { <-ctx.Done(); l.Close() }()
	for {
		conn, err := l.Accept()
		if err != nil {
			b.log.Error("no backup-stop in time: backup aborted", "timeout", timeout)
			return fmt.Errorf("backup %s aborted: no backup-stop within %v", b.ID(), timeout)
		}
		done, err := serveHold(context.WithoutCancel(ctx), b, conn)
		if done {
			return err
		}
	}
}

// serveHold answers one request; done reports whether the holder is
// finished.
func serveHold(ctx context.Context, b *Backup, conn net.Conn) (done bool, err error) {
	defer conn.Close()
	var req HoldRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		return false, nil
	}
	reply := HoldReply{ID: b.ID()}
	switch req.Op {
	case "abort":
		b.Abort()
		reply.Status = "aborted"
		err = fmt.Errorf("backup %s aborted on request", b.ID())
	case "stop":
		snaps := req.Snapshots
		if snaps == nil {
			snaps = []string{}
		}
		var m *manifest.Manifest
		m, err = b.End(ctx, &Captured{Payload: ExternalPayload{Orchestrator: req.Orchestrator, Snapshots: snaps}})
		reply.Status = "complete"
		if m != nil {
			reply.StopLSN = m.StopLSN.String()
			reply.Status = m.Status
		}
		if err != nil {
			reply.Status, reply.Error = manifest.StatusFailed, err.Error()
		}
	default:
		json.NewEncoder(conn).Encode(HoldReply{ID: b.ID(), Error: fmt.Sprintf("unknown request %q", req.Op)})
		return false, nil
	}
	json.NewEncoder(conn).Encode(reply)
	return true, err
}

// ErrNoHolder means no backup is being held at the socket.
var ErrNoHolder = errors.New("no backup in progress (no walsnap backup-start holder at the socket)")

// SendHold sends a request to the holder at socket and returns its reply.
func SendHold(ctx context.Context, socket string, req HoldRequest) (HoldReply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
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
