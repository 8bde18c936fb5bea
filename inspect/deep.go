package inspect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/walsnap/walsnap/internal/manifest"
	"github.com/walsnap/walsnap/internal/wal"
)

// deepJob is one object a deep verify reads whole.
type deepJob struct {
	size  int64 // stored bytes, for progress
	isWAL bool
	// check reads the object and returns what is wrong with it ("" when
	// nothing), and whether it checked only the stored bytes (encrypted,
	// and this host has no identity).
	check func(ctx context.Context) (problem string, storedOnly bool)
}

// deep reads whole every WAL segment some backup's recovery reads, and
// every part of the complete files backups, o.Concurrency at a time.
func (v *verifier) deep(ctx context.Context) {
	var jobs []deepJob
	seen := map[string]bool{}
	for _, m := range v.c.Backups {
		if m.Status != manifest.StatusComplete {
			continue
		}
		jobs = append(jobs, v.walJobs(m, seen)...)
		if p, err := manifest.PayloadOf[manifest.FilesPayload](m); err == nil {
			for _, part := range p.Parts {
				jobs = append(jobs, v.partJob(m.ID, part))
			}
		}
	}
	prog := &lockedProgress{fn: v.o.Progress}
	for _, j := range jobs {
		prog.total += j.size
	}
	var mu sync.Mutex
	var problems []string
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(v.o.Concurrency, len(jobs)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(jobs)) && ctx.Err() == nil; i = next.Add(1) - 1 {
				problem, storedOnly := jobs[i].check(ctx)
				mu.Lock()
				if jobs[i].isWAL {
					v.res.Read.WAL++
				} else {
					v.res.Read.Parts++
				}
				if storedOnly {
					v.res.Read.StoredOnly++
				}
				v.res.Read.Bytes += jobs[i].size
				if problem != "" {
					problems = append(problems, problem)
				}
				mu.Unlock()
				prog.add(jobs[i].size)
			}
		})
	}
	wg.Wait()
	slices.Sort(problems)
	v.res.Problems = append(v.res.Problems, problems...)
	if ctx.Err() != nil {
		v.problem("deep verify stopped: %v", context.Cause(ctx))
	}
}

// walJobs are the reads of the segments that recoveries from m read,
// each segment once across backups.
func (v *verifier) walJobs(m *manifest.Manifest, seen map[string]bool) []deepJob {
	start, err := wal.ParseSegmentName(m.StartWAL, v.c.Identity.SegmentSize)
	if err != nil {
		return nil // reported by the backup's own check
	}
	var jobs []deepJob
	for _, tli := range v.c.Descendants(m.Timeline, m.StopLSN) {
		spans, err := v.c.Route(start, tli)
		if err != nil {
			continue // reported by the backup's own check
		}
		for _, f := range v.c.SegmentsAlong(spans) {
			if seen[f.Name] {
				continue
			}
			seen[f.Name] = true
			jobs = append(jobs, deepJob{size: f.Size, isWAL: true, check: func(ctx context.Context) (string, bool) {
				content, err := fetchBack(ctx, v.o.Repo, v.c.Identity, f.Name, f.Codec)
				if err != nil {
					// Header errors start with the name already.
					return fmt.Sprintf("WAL %s: %s", f.Name, strings.TrimPrefix(err.Error(), f.Name+": ")), !content
				}
				return "", !content
			}})
		}
	}
	return jobs
}

// headWriter keeps the first bytes written to it: a segment's long page
// header.
type headWriter struct{ b []byte }

func (h *headWriter) Write(p []byte) (int, error) {
	if n := wal.LongHeaderSize - len(h.b); n > 0 {
		h.b = append(h.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// partJob is the read of one part of a files backup, checked against the
// manifest.
func (v *verifier) partJob(id string, p manifest.Part) deepJob {
	return deepJob{size: p.StoredSize, check: func(ctx context.Context) (string, bool) {
		d, err := v.o.Repo.DigestPart(ctx, id, p.Key)
		var problem string
		switch {
		case err != nil:
			problem = err.Error()
		case d.Stored != p.StoredSize:
			problem = fmt.Sprintf("%d stored bytes, the manifest records %d", d.Stored, p.StoredSize)
		case p.StoredSHA256 != "" && d.StoredSHA256 != p.StoredSHA256:
			problem = fmt.Sprintf("stored bytes checksum mismatch: SHA-256 %s, the manifest records %s", d.StoredSHA256, p.StoredSHA256)
		case d.Content && (d.Raw != p.RawSize || d.SHA256 != p.SHA256):
			problem = fmt.Sprintf("checksum mismatch: %d bytes with SHA-256 %s, the manifest records %d bytes with %s", d.Raw, d.SHA256, p.RawSize, p.SHA256)
		case d.Meta.SHA256 != p.SHA256 || d.Meta.RawSize != p.RawSize || d.Meta.Encrypted != (p.Encryption != ""):
			problem = "the object's metadata does not match the manifest"
		default:
			if err := d.Check(); err != nil {
				problem = strings.TrimPrefix(err.Error(), p.Key+": ")
			}
		}
		if problem != "" {
			return fmt.Sprintf("backup %s: part %s: %s", id, p.Key, problem), err == nil && !d.Content
		}
		return "", !d.Content
	}}
}

// lockedProgress serializes calls to a progress callback and sums bytes.
type lockedProgress struct {
	mu          sync.Mutex
	fn          func(done, total int64)
	done, total int64
}

func (p *lockedProgress) add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}
