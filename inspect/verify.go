package inspect

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/walsnap/walsnap/internal/buildinfo"
	"github.com/walsnap/walsnap/internal/catalog"
	"github.com/walsnap/walsnap/internal/ebs"
	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/repo"
	"github.com/walsnap/walsnap/internal/shellcmd"
	"github.com/walsnap/walsnap/internal/wal"
)

// DefaultConcurrency is how many objects a deep verify reads at once.
const DefaultConcurrency = 8

// SnapshotDescriber describes EBS snapshots (*ebs.Client does).
type SnapshotDescriber interface {
	SnapshotStates(ctx context.Context, ids []string) (map[string]ebs.SnapshotState, error)
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Repo *repo.Repo
	// Deep reads every object in range whole: WAL segments (size,
	// SHA-256, page header, system identifier) and files-provider parts
	// (against the manifest's sizes and SHA-256). An encrypted object is
	// checked against the SHA-256 of its stored bytes, and its content
	// too when the repository handle has the identity.
	Deep bool
	// Concurrency is how many objects Deep reads at once (0: default).
	Concurrency int
	// EC2 returns the client that describes EBS snapshots; it is called
	// only when there are EBS backups.
	EC2 func(ctx context.Context) (SnapshotDescriber, error)
	// CommandVerify is command.verify: run for each command-provider
	// backup to check that its snapshots exist ("": not checked).
	CommandVerify string
	// Progress, when set, gets the stored bytes read so far by Deep and
	// their total. Calls are serialized.
	Progress func(done, total int64)
}

// VerifyResult is what walsnap verify found. It is stored in the
// repository (see SaveVerify) for walsnap status.
type VerifyResult struct {
	Time           time.Time `json:"time"`
	Seconds        float64   `json:"duration_seconds"`
	WalsnapVersion string    `json:"walsnap_version"`
	Deep           bool      `json:"deep"`
	OK             bool      `json:"ok"`
	Repository     string    `json:"repository"`
	SystemID       uint64    `json:"system_identifier,string"`
	// Newest is the segment archived last, and NewestTime when.
	Newest     string        `json:"newest_segment,omitempty"`
	NewestTime time.Time     `json:"newest_segment_time"`
	WALFiles   int           `json:"wal_files"`
	Backups    []BackupCheck `json:"backups"`
	// Gaps are the missing ranges of WAL on the way from any backup to the
	// newest segment of each timeline it can follow.
	Gaps []GapRange `json:"gaps"`
	// Read counts what Deep read whole.
	Read     ReadCounts `json:"read"`
	Problems []string   `json:"problems"`
}

// ReadCounts counts the objects a deep verify read.
type ReadCounts struct {
	WAL   int   `json:"wal_segments"`
	Parts int   `json:"parts"`
	Bytes int64 `json:"stored_bytes"`
	// StoredOnly counts the encrypted objects checked by their stored
	// bytes only: this host has no identity to read their content.
	StoredOnly int `json:"stored_only"`
}

// BackupCheck is one backup's verdict.
type BackupCheck struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Status   string `json:"status"`
	StartWAL string `json:"start_wal"`
	StopWAL  string `json:"stop_wal"`
	// Payload says what was found of the provider's data.
	Payload string `json:"payload"`
	// WALComplete reports whether the WAL from start to stop is all there.
	WALComplete bool           `json:"wal_complete"`
	Windows     []WindowResult `json:"windows"`
	Problems    []string       `json:"problems"`
}

// WindowResult is what a backup restores to along one timeline: any
// point from From (its stop) to To (the archive time of ToSegment, the
// last segment of the unbroken chain).
type WindowResult struct {
	Timeline  uint32     `json:"timeline"`
	From      time.Time  `json:"from"`
	To        time.Time  `json:"to"`
	ToSegment string     `json:"to_segment"`
	Gaps      []GapRange `json:"gaps"`
}

// GapRange is a range of missing segments of one timeline.
type GapRange struct {
	Timeline uint32 `json:"timeline"`
	First    string `json:"first"`
	Last     string `json:"last"`
	Count    uint64 `json:"segments"`
}

func gapRange(g catalog.Gap, segSize uint64) GapRange {
	first, last := g.Names(segSize)
	return GapRange{Timeline: g.TLI, First: first, Last: last, Count: g.Last - g.First + 1}
}

func (g GapRange) String() string {
	if g.First == g.Last {
		return fmt.Sprintf("timeline %d: segment %s is missing", g.Timeline, g.First)
	}
	return fmt.Sprintf("timeline %d: segments %s to %s are missing (%d segments)", g.Timeline, g.First, g.Last, g.Count)
}

// verifier is one run of Verify.
type verifier struct {
	o   VerifyOptions
	c   *catalog.Catalog
	res *VerifyResult
	// byID finds a backup's check.
	byID map[string]*BackupCheck
}

// Verify checks the repository: each backup's manifest, payload and WAL
// from start to stop; the WAL from every backup to the newest segment of
// each timeline it can follow; and, with Deep, every object in range
// byte for byte. Problems are in the result (OK false); an error means
// the repository could not be read at all.
func Verify(ctx context.Context, o VerifyOptions) (*VerifyResult, error) {
	start := time.Now()
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	c, err := catalog.Load(ctx, o.Repo)
	if err != nil {
		return nil, err
	}
	v := &verifier{o: o, c: c, byID: map[string]*BackupCheck{}, res: &VerifyResult{
		Time: start.UTC(), WalsnapVersion: buildinfo.Version(), Deep: o.Deep, Repository: o.Repo.String(),
		SystemID: c.Identity.SystemID, WALFiles: len(c.Files), Backups: []BackupCheck{}, Gaps: []GapRange{}, Problems: []string{},
	}}
	if last, ok := c.LastArchived(); ok {
		v.res.Newest, v.res.NewestTime = last.Name, last.ModTime.UTC()
	}
	for _, b := range c.BadBackups {
		v.problem("%v", b.Err) // the error names the backup
	}
	for _, p := range c.Problems {
		v.problem("%s", p)
	}
	if err := v.backups(ctx); err != nil {
		return nil, err
	}
	for _, b := range v.res.Backups {
		for _, p := range b.Problems {
			v.res.Problems = append(v.res.Problems, "backup "+b.ID+": "+p)
		}
	}
	for _, g := range v.res.Gaps {
		v.problem("WAL %s", g)
	}
	if o.Deep {
		v.deep(ctx)
	}
	v.res.OK = len(v.res.Problems) == 0
	v.res.Seconds = time.Since(start).Seconds()
	return v.res, nil
}

func (v *verifier) problem(format string, args ...any) {
	v.res.Problems = append(v.res.Problems, fmt.Sprintf(format, args...))
}

// backups checks each backup's payload and WAL, and the chains.
func (v *verifier) backups(ctx context.Context) error {
	segSize := v.c.Identity.SegmentSize
	var gaps []catalog.Gap
	for _, m := range v.c.Backups {
		v.res.Backups = append(v.res.Backups, BackupCheck{ID: m.ID, Provider: string(m.Provider), Status: m.Status,
			StartWAL: m.StartWAL, StopWAL: m.StopWAL, Windows: []WindowResult{}, Problems: []string{}})
	}
	for i := range v.res.Backups {
		b := &v.res.Backups[i]
		v.byID[b.ID] = b
		m := v.c.Backups[i]
		if m.Status != manifest.StatusComplete {
			b.Payload = "not verified: the backup is " + m.Status
			continue
		}
		if m.SystemID != v.c.Identity.SystemID {
			b.Problems = append(b.Problems, fmt.Sprintf("taken of database system %d, but the repository belongs to %d", m.SystemID, v.c.Identity.SystemID))
		}
		ws, err := v.c.Windows(m)
		if err != nil {
			b.Problems = append(b.Problems, err.Error())
			continue
		}
		b.WALComplete = len(ws) > 0 && ws[0].Consistent
		if !b.WALComplete {
			var missing []string
			for _, g := range ws[0].Gaps {
				if stop, _ := wal.ParseSegmentName(m.StopWAL, segSize); g.First <= stop.No {
					missing = append(missing, gapRange(g, segSize).String())
				}
			}
			b.Problems = append(b.Problems, fmt.Sprintf("the WAL from %s to %s, without which it restores to nothing, is incomplete: %s",
				m.StartWAL, m.StopWAL, cmp.Or(strings.Join(missing, "; "), "nothing archived")))
		}
		for _, w := range ws {
			gaps = append(gaps, w.Gaps...)
			if !w.Consistent {
				continue
			}
			wr := WindowResult{Timeline: w.Timeline, From: w.From.UTC(), To: w.To.UTC(), ToSegment: w.ToSegment.Name(segSize), Gaps: []GapRange{}}
			for _, g := range w.Gaps {
				wr.Gaps = append(wr.Gaps, gapRange(g, segSize))
			}
			b.Windows = append(b.Windows, wr)
		}
	}
	for _, g := range catalog.MergeGaps(gaps) {
		v.res.Gaps = append(v.res.Gaps, gapRange(g, segSize))
	}
	return v.payloads(ctx)
}

// payloads checks what each complete backup's provider stored.
func (v *verifier) payloads(ctx context.Context) error {
	var objects map[string]int64 // key → stored size, listed once for all backups
	snapshotsOf := map[string][]manifest.EBSSnapshot{}
	for _, m := range v.c.Backups {
		if m.Status != manifest.StatusComplete {
			continue
		}
		b := v.byID[m.ID]
		p, err := m.DecodePayload()
		if err != nil {
			b.Problems = append(b.Problems, err.Error())
			continue
		}
		switch p := p.(type) {
		case *manifest.FilesPayload:
			if objects == nil {
				list, err := v.o.Repo.BackupObjects(ctx, "")
				if err != nil {
					return err
				}
				objects = make(map[string]int64, len(list))
				for _, o := range list {
					objects[o.Key] = o.Size
				}
			}
			v.parts(b, p, objects)
		case *manifest.EBSPayload:
			snapshotsOf[m.ID] = p.Snapshots
		case *manifest.CommandPayload:
			v.commandVerify(ctx, b, p.Snapshots)
		case *manifest.ExternalPayload:
			b.Payload = fmt.Sprintf("%d snapshots of an external orchestrator, not checked", len(p.Snapshots))
		}
	}
	v.snapshots(ctx, snapshotsOf)
	return nil
}

// parts checks that a files backup's parts are stored with their sizes.
func (v *verifier) parts(b *BackupCheck, p *manifest.FilesPayload, objects map[string]int64) {
	var stored int64
	for _, part := range p.Parts {
		size, ok := objects[part.Key]
		switch {
		case !ok:
			b.Problems = append(b.Problems, fmt.Sprintf("part %s is missing", part.Key))
		case size != part.StoredSize:
			b.Problems = append(b.Problems, fmt.Sprintf("part %s is %d bytes, the manifest records %d", part.Key, size, part.StoredSize))
		}
		stored += part.StoredSize
	}
	b.Payload = fmt.Sprintf("%d parts, %s stored", len(p.Parts), manifest.Human(stored))
}

// snapshots checks that the EBS backups' snapshots exist and are completed.
func (v *verifier) snapshots(ctx context.Context, snapshotsOf map[string][]manifest.EBSSnapshot) {
	if len(snapshotsOf) == 0 {
		return
	}
	var ids []string
	for _, snaps := range snapshotsOf {
		for _, s := range snaps {
			ids = append(ids, s.SnapshotID)
		}
	}
	slices.Sort(ids)
	var states map[string]ebs.SnapshotState
	var err error
	if v.o.EC2 == nil {
		err = errors.New("no EC2 client")
	} else {
		var d SnapshotDescriber
		if d, err = v.o.EC2(ctx); err == nil {
			states, err = d.SnapshotStates(ctx, slices.Compact(ids))
		}
	}
	for id, snaps := range snapshotsOf {
		b := v.byID[id]
		if err != nil {
			b.Payload = fmt.Sprintf("%d EBS snapshots, not checked", len(snaps))
			b.Problems = append(b.Problems, fmt.Sprintf("its EBS snapshots could not be checked: %v", err))
			continue
		}
		var gib int64
		for _, s := range snaps {
			st, ok := states[s.SnapshotID]
			what := fmt.Sprintf("EBS snapshot %s of %s", s.SnapshotID, s.VolumeID)
			if s.MountPoint != "" {
				what += " (" + s.MountPoint + ")"
			}
			switch {
			case !ok:
				b.Problems = append(b.Problems, what+" does not exist")
			case st.State == "error":
				b.Problems = append(b.Problems, fmt.Sprintf("%s failed: %s", what, cmp.Or(st.Message, "state error")))
			case st.State != "completed":
				b.Problems = append(b.Problems, fmt.Sprintf("%s is %s (%s), not completed", what, st.State, st.Progress))
			}
			gib += int64(s.SizeGiB)
		}
		b.Payload = fmt.Sprintf("%d EBS snapshots of %d GiB of volumes", len(snaps), gib)
	}
}

// commandVerify runs command.verify for a command-provider backup.
func (v *verifier) commandVerify(ctx context.Context, b *BackupCheck, snaps []string) {
	if v.o.CommandVerify == "" {
		b.Payload = fmt.Sprintf("%d snapshots, not checked (command.verify is not set)", len(snaps))
		return
	}
	var stderr bytes.Buffer
	env := []string{"WALSNAP_BACKUP_ID=" + b.ID, "WALSNAP_SNAPSHOTS=" + strings.Join(snaps, "\n")}
	if err := shellcmd.Run(ctx, v.o.CommandVerify, env, io.Discard, &stderr); err != nil {
		msg := err.Error()
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); lines[len(lines)-1] != "" {
			msg += ": " + lines[len(lines)-1]
		}
		b.Payload = fmt.Sprintf("%d snapshots", len(snaps))
		b.Problems = append(b.Problems, "command.verify failed: "+msg)
		return
	}
	b.Payload = fmt.Sprintf("%d snapshots, confirmed by command.verify", len(snaps))
}

// SaveVerify stores res in the repository as the latest verify result.
func SaveVerify(ctx context.Context, r *repo.Repo, res *VerifyResult) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = r.PutResult(ctx, repo.ResultVerify, data)
	return err
}

// LastVerify reads the latest stored verify result; an error matching
// repo.ErrNoResult when verify never ran.
func LastVerify(ctx context.Context, r *repo.Repo) (*VerifyResult, error) {
	stored, err := r.LatestResult(ctx, repo.ResultVerify)
	if err != nil {
		return nil, err
	}
	var res VerifyResult
	if err := json.Unmarshal(stored.Data, &res); err != nil {
		return nil, fmt.Errorf("the stored verify result: %w", err)
	}
	return &res, nil
}

// WriteText writes the result for people: the repository, each backup
// with its windows, then one line per problem.
func (res *VerifyResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "repository %s (database system %d): %d WAL files", res.Repository, res.SystemID, res.WALFiles)
	if res.Newest != "" {
		fmt.Fprintf(w, ", newest segment %s archived %s", res.Newest, stamp(res.NewestTime))
	}
	fmt.Fprintln(w)
	for _, b := range res.Backups {
		fmt.Fprintf(w, "backup %s (%s, %s): %s", b.ID, b.Provider, b.Status, b.Payload)
		if b.Status == manifest.StatusComplete {
			verdict := "complete"
			if !b.WALComplete {
				verdict = "INCOMPLETE"
			}
			fmt.Fprintf(w, "; WAL %s to %s %s", b.StartWAL, b.StopWAL, verdict)
		}
		fmt.Fprintln(w)
		for _, win := range b.Windows {
			fmt.Fprintf(w, "  timeline %d: any point from %s to %s (segment %s)", win.Timeline, stamp(win.From), stamp(win.To), win.ToSegment)
			if len(win.Gaps) > 0 {
				fmt.Fprintf(w, ", then %d gaps", len(win.Gaps))
			}
			fmt.Fprintln(w)
		}
	}
	if res.Deep {
		fmt.Fprintf(w, "deep: read %d WAL segments and %d parts whole (%s)\n", res.Read.WAL, res.Read.Parts, manifest.Human(res.Read.Bytes))
		if res.Read.StoredOnly > 0 {
			fmt.Fprintf(w, "deep: %d encrypted objects checked by the SHA-256 of their stored bytes only; with encryption.identity_file their content is checked too\n", res.Read.StoredOnly)
		}
	}
	for _, p := range res.Problems {
		fmt.Fprintln(w, "problem:", p)
	}
	if res.OK {
		fmt.Fprintf(w, "verify: ok (%.1fs)\n", res.Seconds)
	} else {
		fmt.Fprintf(w, "verify: %d problems (%.1fs)\n", len(res.Problems), res.Seconds)
	}
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
