package manifest

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteTable prints backups as an aligned table for people.
func WriteTable(w io.Writer, backups []*Manifest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROVIDER\tSTART\tSTOP\tSTART LSN\tSTOP LSN\tTL\tSIZE\tSTORED\tSTATUS\tPIN\tDRILLED")
	for _, m := range backups {
		pin, drilled := "", ""
		if m.Pinned {
			pin = "pinned"
		}
		if m.Drilled != nil {
			drilled = stamp(*m.Drilled)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
			m.ID, m.Provider, stamp(m.StartTime), stamp(m.StopTime), m.StartLSN, m.StopLSN, m.Timeline,
			Human(m.BytesIn), Human(m.BytesOut), m.Status, pin, drilled)
	}
	return tw.Flush()
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

// Human formats a byte count for people ("12.3 MiB").
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
