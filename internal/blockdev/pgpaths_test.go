package blockdev

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPostgreSQLPaths(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mkdir := func(p string) string {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	symlink := func(target, link string) string {
		t.Helper()
		link = filepath.Join(root, link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		return link
	}
	// /data/main with pg_wal -> /wal/main/pg_wal; /pgdata -> data/main;
	// tablespace /ts/fast reached through /tslink.
	main := mkdir("data/main")
	wal := mkdir("wal/main/pg_wal")
	symlink(wal, "data/main/pg_wal")
	fast := mkdir("ts/fast")
	pgdataLink := symlink("data/main", "pgdata")
	tsLink := symlink("ts", "tslink")
	// /plain has pg_wal as a directory.
	plain := mkdir("plain")
	mkdir("plain/pg_wal")
	// /dangling has pg_wal pointing nowhere; /nowal has none; /file is a file.
	dangling := mkdir("dangling")
	symlink(filepath.Join(root, "gone"), "dangling/pg_wal")
	nowal := mkdir("nowal")
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name        string
		pgdata      string
		tablespaces []string
		want        []string
	}{
		{"pg_wal directory, no tablespaces", plain, nil, []string{plain}},
		{"pg_wal symlink", main, nil, []string{main, wal}},
		{"pgdata through a symlink", pgdataLink, nil, []string{main, wal}},
		{"tablespaces resolved, empty and duplicate dropped", main, []string{"", filepath.Join(tsLink, "fast"), fast, main}, []string{main, wal, fast}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PostgreSQLPaths(tc.pgdata, tc.tablespaces)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name        string
		pgdata      string
		tablespaces []string
	}{
		{"dangling pg_wal", dangling, nil},
		{"no pg_wal", nowal, nil},
		{"no pgdata", filepath.Join(root, "absent"), nil},
		{"pgdata is a file", file, nil},
		{"missing tablespace", plain, []string{filepath.Join(root, "absent")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := PostgreSQLPaths(tc.pgdata, tc.tablespaces); err == nil {
				t.Fatalf("got %q, want an error", got)
			}
		})
	}
}
