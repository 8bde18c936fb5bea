package ebs

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// typeLimits are EC2's limits for the volumes of one type (CreateVolume in
// the EC2 API reference). A zero maxIOPS or maxThroughput means the type
// takes no such setting: it follows from the size.
type typeLimits struct {
	minSize, maxSize int32 // GiB
	minIOPS, maxIOPS int32
	iopsPerGiB       int32 // provisioned IOPS per GiB of size, at most
	baseIOPS         int32 // IOPS allowed whatever the size (gp3's baseline)
	minThroughput    int32 // MiB/s
	maxThroughput    int32
	// throughputPerIOPS caps the throughput at this many MiB/s per IOPS.
	throughputPerIOPS float64
}

var volumeTypes = map[string]typeLimits{
	"gp3":      {minSize: 1, maxSize: 65536, minIOPS: 3000, maxIOPS: 80000, iopsPerGiB: 500, baseIOPS: 3000, minThroughput: 125, maxThroughput: 2000, throughputPerIOPS: 0.25},
	"gp2":      {minSize: 1, maxSize: 16384},
	"io1":      {minSize: 4, maxSize: 16384, minIOPS: 100, maxIOPS: 64000, iopsPerGiB: 50},
	"io2":      {minSize: 4, maxSize: 65536, minIOPS: 100, maxIOPS: 256000, iopsPerGiB: 1000},
	"st1":      {minSize: 125, maxSize: 16384},
	"sc1":      {minSize: 125, maxSize: 16384},
	"standard": {minSize: 1, maxSize: 1024},
}

// The initialization rates EC2 accepts (VolumeInitializationRate), MiB/s.
const (
	MinInitializationRate = 100
	MaxInitializationRate = 300
)

// CheckInitializationRate checks a volume initialization rate in MiB/s;
// 0 is none (EBS's default, lazy, loading).
func CheckInitializationRate(rate int32) error {
	if rate != 0 && (rate < MinInitializationRate || rate > MaxInitializationRate) {
		return fmt.Errorf("initialization rate %d MiB/s: EC2 takes %d-%d", rate, MinInitializationRate, MaxInitializationRate)
	}
	return nil
}

// CheckVolume checks a volume to create against EC2's limits for its
// type, so that a restore refuses it before it creates anything: the
// type, the size (sizeGiB, the snapshot's when v.SizeGiB is 0), whether
// the type takes IOPS and throughput settings, their ranges, the IOPS per
// GiB, the throughput per IOPS, and the initialization rate.
func CheckVolume(v VolumeSpec, sizeGiB int32) error {
	if v.SizeGiB != 0 {
		sizeGiB = v.SizeGiB
	}
	lim, ok := volumeTypes[v.Type]
	if !ok {
		return fmt.Errorf("volume type %q: EC2 has %s", v.Type, strings.Join(slices.Sorted(maps.Keys(volumeTypes)), ", "))
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if sizeGiB < lim.minSize || sizeGiB > lim.maxSize {
		bad("%s volumes are %d-%d GiB, not %d GiB", v.Type, lim.minSize, lim.maxSize, sizeGiB)
	}
	iops := v.IOPS
	switch {
	case lim.maxIOPS == 0 && v.IOPS != 0:
		bad("%s volumes take no IOPS setting (their IOPS follow from their size)", v.Type)
	case lim.maxIOPS == 0:
	case v.IOPS == 0 && lim.baseIOPS == 0:
		bad("%s volumes need an IOPS setting (%d-%d)", v.Type, lim.minIOPS, lim.maxIOPS)
	case v.IOPS == 0:
		iops = lim.baseIOPS
	case v.IOPS < lim.minIOPS || v.IOPS > lim.maxIOPS:
		bad("%d IOPS: %s volumes take %d-%d", v.IOPS, v.Type, lim.minIOPS, lim.maxIOPS)
	case v.IOPS > max(lim.baseIOPS, lim.iopsPerGiB*sizeGiB):
		bad("%d IOPS on %d GiB of %s: at most %d IOPS per GiB, %d", v.IOPS, sizeGiB, v.Type, lim.iopsPerGiB, max(lim.baseIOPS, lim.iopsPerGiB*sizeGiB))
	}
	switch {
	case lim.maxThroughput == 0 && v.Throughput != 0:
		bad("%s volumes take no throughput setting", v.Type)
	case lim.maxThroughput == 0 || v.Throughput == 0:
	case v.Throughput < lim.minThroughput || v.Throughput > lim.maxThroughput:
		bad("%d MiB/s: %s volumes take %d-%d", v.Throughput, v.Type, lim.minThroughput, lim.maxThroughput)
	case float64(v.Throughput) > lim.throughputPerIOPS*float64(iops):
		bad("%d MiB/s with %d IOPS: %s volumes have at most %g MiB/s per IOPS, %d", v.Throughput, iops, v.Type, lim.throughputPerIOPS, int32(lim.throughputPerIOPS*float64(iops)))
	}
	errs = append(errs, CheckInitializationRate(v.InitializationRate))
	return errors.Join(errs...)
}
