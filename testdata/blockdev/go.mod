// This directory is its own module only so that the main module's zip (go
// install/get from the proxy) leaves it out: sysfs names contain ':'
// (259:1, pci0000:00), which module zips refuse as "malformed file path".
module github.com/walsnap/walsnap/testdata/blockdev
