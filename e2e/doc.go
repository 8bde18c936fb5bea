// Package e2e holds walsnap's end-to-end tests: they build the walsnap
// binary and drive it as a user would, against real PostgreSQL servers
// (every major 13–18), MinIO, moto's EC2 API and loop devices, and read
// the repository only through internal/repo and internal/manifest to check
// what the binary wrote.
//
// The package has no code of its own; everything is in its _test.go
// files. cluster_test.go sets up the cluster every test starts from: a
// PostgreSQL primary archiving with `walsnap wal-push` into a repository,
// and the config file every walsnap command of the test runs with.
package e2e
