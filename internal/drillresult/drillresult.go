// Package drillresult is the record of one walsnap drill, as the drill
// stores it in the repository (internal/repo, kind drill) and as walsnap
// status reads it back: which backup was restored, to what target, how
// long each phase took, what every check found.
package drillresult

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Phase names, in the order a drill runs them.
const (
	PhaseChoose      = "choose"      // read the repository, choose the backup, check its WAL
	PhaseMaterialize = "materialize" // unpack the files, build and mount the volumes, or run command.restore; prepare recovery
	PhaseReplay      = "replay"      // start the server, replay WAL to the target, promote
	PhaseChecks      = "checks"      // connections, pg_amcheck, --check-sql
	PhaseTeardown    = "teardown"    // stop the server, remove what the drill built
)

// Check statuses.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// Result is one drill.
type Result struct {
	ID             string    `json:"id"`
	Time           time.Time `json:"time"` // when the drill began
	Seconds        float64   `json:"duration_seconds"`
	WalsnapVersion string    `json:"walsnap_version"`
	Host           string    `json:"host"`
	Repository     string    `json:"repository"`
	// OK: the backup was restored, recovery reached the target and
	// promoted, and every check passed.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Backup is the backup drilled (empty when none could be chosen).
	Backup Backup `json:"backup"`
	Target string `json:"target"`
	// Reached is where recovery ended (nil when it did not).
	Reached *Reached `json:"reached,omitempty"`
	// RecoverySeconds is what a restore of this backup to this target
	// takes on this host: choosing, materializing and replaying, until
	// the server is promoted. 0 when the drill did not get that far.
	RecoverySeconds float64 `json:"recovery_seconds"`
	Phases          []Phase `json:"phases"`
	Replay          *Replay `json:"replay,omitempty"`
	Checks          []Check `json:"checks"`
	// Kept: the server was left running (--keep), in Scratch.
	Kept    bool   `json:"kept"`
	Scratch string `json:"scratch"`
}

// Backup names the backup drilled.
type Backup struct {
	ID        string    `json:"id,omitempty"`
	Provider  string    `json:"provider,omitempty"`
	StopTime  time.Time `json:"stop_time"`
	StopLSN   string    `json:"stop_lsn,omitempty"`
	PGVersion int       `json:"pg_version,omitempty"`
}

// Reached is where recovery ended.
type Reached struct {
	LSN     string `json:"lsn"`
	Segment string `json:"segment"`
}

// Phase is how long one phase took, with what it did.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Detail  string  `json:"detail,omitempty"`
	Steps   []Step  `json:"steps,omitempty"`
}

// Step is part of a phase (ebs: create, attach, device, mount).
type Step struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Replay is what WAL replay read.
type Replay struct {
	// Segments is the number of WAL segments the server restored from the
	// repository (its log's "restored log file" lines).
	Segments int `json:"segments"`
	// Bytes is the WAL replayed: from the backup's start to where
	// recovery ended.
	Bytes          int64   `json:"bytes"`
	BytesPerSecond float64 `json:"bytes_per_second"`
}

// Check is one check of the recovered server.
type Check struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"` // Pass, Fail or Skip
	Seconds float64 `json:"seconds"`
	Detail  string  `json:"detail,omitempty"`
}

// Phase returns the phase named name, or nil.
func (r *Result) Phase(name string) *Phase {
	for i := range r.Phases {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// Parse decodes a stored result.
func Parse(data []byte) (*Result, error) {
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("drill result: %w", err)
	}
	if r.ID == "" || r.Time.IsZero() {
		return nil, errors.New("drill result: no drill id or time")
	}
	return &r, nil
}
