package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrInsecureFile is returned for a config file that users other than root
// and the user running walsnap could change, directly or by replacing it:
// whoever can edit the config can redirect the archive, and (command
// provider) choose the shell commands walsnap runs.
var ErrInsecureFile = errors.New("insecure config file")

// ErrMultipleDocuments is returned for a config file with more than one
// YAML document: only the first would be read, so the others could only
// mislead whoever reads the file.
var ErrMultipleDocuments = errors.New("more than one YAML document (a second '---'); a config file holds one")

// maxConfigSize bounds what is read of a config file.
const maxConfigSize = 1 << 20

// maxSymlinks bounds the symlinks followed while resolving a config path,
// as the kernel's ELOOP does.
const maxSymlinks = 40

// The rule, in the spirit of OpenSSH's StrictModes, with "trusted" meaning
// root or the user walsnap runs as (its effective uid):
//
//   - the config file is owned by a trusted user and is not writable by
//     group or others (readable is fine: /etc/walsnap/walsnap.yaml owned by
//     root, group postgres, mode 0640 serves the postgres user);
//   - every directory from / down to the file, and every directory a
//     symlink on the way leads through, is owned by a trusted user and is
//     not writable by group or others, or else has the sticky bit (like
//     /tmp: there only an entry's owner can rename or remove it, and each
//     entry on the path is itself checked to be trusted);
//   - every symlink on the way is owned by a trusted user.
//
// Otherwise someone else could edit the file or put another in its place.
// Root trusts only root: a config that the postgres user could change is
// refused when walsnap runs as root (restore, backup with freeze or the
// command provider), or that user could choose what root runs.

// geteuid is os.Geteuid; tests take another user's view through it.
var geteuid = os.Geteuid

// trustedUID reports whether a file owned by uid may hold walsnap's config.
func trustedUID(uid uint32) bool {
	return uid == 0 || int64(uid) == int64(geteuid())
}

// readConfigFile reads path after checking that only trusted users could
// have written it (see the rule above).
func readConfigFile(path string) ([]byte, error) {
	return readTrustedFile("config", path, false)
}

// ReadSecretFile reads a file that holds a secret (setting names it in
// messages): the config file's rule applies, and it must not be readable
// by others either (owner, or owner and group: 0600, or 0640 with group
// postgres for the postgres user).
func ReadSecretFile(setting, path string) ([]byte, error) {
	return readTrustedFile(setting, path, true)
}

// readTrustedFile reads the file of what ("config", a setting) at path
// after checking that only trusted users could have written it, and, for a
// secret, that others cannot read it.
func readTrustedFile(what, path string, secret bool) ([]byte, error) {
	abs := path
	if !filepath.IsAbs(path) {
		// Not filepath.Abs: cleaning "link/.." lexically would name
		// another file than the kernel resolves; securePath resolves it.
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, path, err)
		}
		abs = wd + "/" + path
	}
	real, err := securePath(abs)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	before, err := os.Lstat(real)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s: not a regular file (%v)", what, path, before.Mode().Type())
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	defer f.Close()
	// The checks are on the file that is open: it cannot change between
	// check and read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !os.SameFile(before, fi) || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s: %w: it was replaced while being opened", what, path, ErrInsecureFile)
	}
	if uid := ownerOf(fi); !trustedUID(uid) {
		return nil, fmt.Errorf("%s %s: %w: it is owned by %s, but %s; "+
			"make root its owner (mode 0640 with group postgres serves the postgres user too)", what, path, ErrInsecureFile, userName(uid), trusted())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%s %s: %w: mode %v makes it writable by group or others; run chmod go-w on it", what, path, ErrInsecureFile, fi.Mode().Perm())
	}
	if secret && fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("%s %s: %w: mode %v lets others read the secret it holds; run chmod o-rwx on it (0600, or 0640 with group postgres)", what, path, ErrInsecureFile, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%s %s: larger than %d bytes", what, path, maxConfigSize)
	}
	return data, nil
}

// securePath resolves the absolute path abs one name at a time, as the
// kernel does, and checks every directory a name is looked up in and every
// symlink followed. It returns the resolved path of the last name, which
// it does not check (the caller checks the file once it is open).
func securePath(abs string) (string, error) {
	if err := checkDir("/"); err != nil {
		return "", err
	}
	cur := "/"
	todo := strings.Split(abs, "/")
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // checked on the way down
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if uid := ownerOf(fi); !trustedUID(uid) {
				return "", fmt.Errorf("%w: symlink %s on its path is owned by %s, who could point it elsewhere, but %s", ErrInsecureFile, next, userName(uid), trusted())
			}
			if links++; links > maxSymlinks {
				return "", fmt.Errorf("%s: too many levels of symbolic links", abs)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		if !hasMore(todo) {
			return next, nil
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("%s: %w", next, syscall.ENOTDIR)
		}
		if err := checkDir(next); err != nil {
			return "", err
		}
		cur = next
	}
	return cur, nil
}

// hasMore reports whether todo still holds a name to look up.
func hasMore(todo []string) bool {
	for _, n := range todo {
		if n != "" && n != "." {
			return true
		}
	}
	return false
}

// checkDir checks one directory on a config file's path.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if uid := ownerOf(fi); !trustedUID(uid) {
		return fmt.Errorf("%w: directory %s on its path is owned by %s, who could replace the file, but %s; "+
			"keep the config in a directory owned by root (e.g. /etc/walsnap)", ErrInsecureFile, dir, userName(uid), trusted())
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("%w: directory %s on its path (mode %v) is writable by group or others, who could replace the file; "+
			"run chmod go-w on it", ErrInsecureFile, dir, fi.Mode().Perm())
	}
	return nil
}

// ownerOf is the uid that owns fi.
func ownerOf(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 1<<32 - 1 // unknown: trusted by no one
}

// trusted says whom walsnap trusts, for messages.
func trusted() string {
	if geteuid() == 0 {
		return "walsnap running as root trusts only root"
	}
	return "walsnap running as " + userName(uint32(geteuid())) + " trusts only root and that user"
}

// userName names uid for messages: "postgres (uid 101)".
func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username + " (uid " + id + ")"
	}
	return "uid " + id
}
