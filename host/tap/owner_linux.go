//go:build linux

package tap

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// ownerDir holds the owner mark of every network namespace tsnsim
// created: a file named like the namespace with the owner's pid and
// process start time. A namespace outlives a process killed with
// SIGKILL (it is a bind mount under /run/netns); the mark tells the next
// tsnsim that it may remove it. Replaced by tests.
var ownerDir = "/run/tsnsim/netns"

// lockName is the file in ownerDir that serialises tsnsim processes
// while they sweep, check and claim names.
const lockName = ".lock"

// owner identifies a process across pid reuse: its pid and its start
// time (field 22 of /proc/PID/stat, clock ticks since boot).
type owner struct {
	pid   int
	start uint64
}

func (o owner) String() string { return "pid " + strconv.Itoa(o.pid) }

// procStart returns the start time of process pid and whether it is a
// zombie (dead, not yet reaped).
func procStart(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false, err
	}
	// The command name is in parentheses and may hold spaces and
	// parentheses itself: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false, fmt.Errorf("/proc/%d/stat: %d fields after the name, want at least 20", pid, len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64) // field 22; f[0] is field 3, the state
	if err != nil {
		return 0, false, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return start, f[0] == "Z", nil
}

// alive reports whether the owner process still runs: its pid exists,
// is not a zombie, and started when the mark says.
func (o owner) alive() bool {
	start, zombie, err := procStart(o.pid)
	return err == nil && !zombie && start == o.start
}

func markPath(ns string) string { return filepath.Join(ownerDir, ns) }

// writeMark records this process as the owner of namespace ns. It is
// written before the namespace is created, so a process killed in
// between leaves a mark without a namespace, which the sweep removes.
func writeMark(ns string) error {
	start, _, err := procStart(os.Getpid())
	if err != nil {
		return fmt.Errorf("tap: owner mark: %w", err)
	}
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		return fmt.Errorf("tap: owner mark: %w", err)
	}
	tmp := filepath.Join(ownerDir, "."+ns+".tmp")
	data := fmt.Sprintf("%d %d\n", os.Getpid(), start)
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		return fmt.Errorf("tap: owner mark: %w", err)
	}
	if err := os.Rename(tmp, markPath(ns)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tap: owner mark: %w", err)
	}
	return nil
}

// readMark returns the owner of namespace ns; ok is false when ns has no
// mark (tsnsim did not create it).
func readMark(ns string) (o owner, ok bool, err error) {
	b, err := os.ReadFile(markPath(ns))
	if errors.Is(err, fs.ErrNotExist) {
		return owner{}, false, nil
	}
	if err != nil {
		return owner{}, false, fmt.Errorf("tap: read owner mark of %q: %w", ns, err)
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &o.pid, &o.start); err != nil || o.pid <= 0 {
		return owner{}, false, fmt.Errorf("tap: owner mark %s is malformed (%q); remove it and the namespace (ip netns del %s)",
			markPath(ns), b, ns)
	}
	return o, true, nil
}

// removeMark deletes the owner mark of ns, if any.
func removeMark(ns string) error {
	if err := os.Remove(markPath(ns)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tap: remove owner mark: %w", err)
	}
	return nil
}

// lockOwners takes an exclusive lock on ownerDir, so that two tsnsim
// processes starting at once do not both sweep or claim a name. The
// returned function releases it. The lock is a flock: the kernel drops
// it when its holder dies.
func lockOwners() (func(), error) {
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		return nil, fmt.Errorf("tap: create %s: %w", ownerDir, err)
	}
	f, err := os.OpenFile(filepath.Join(ownerDir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("tap: lock %s: %w: --netns needs write access to %s and %s "+
				"(root, or CAP_DAC_OVERRIDE besides CAP_NET_ADMIN and CAP_SYS_ADMIN)", ownerDir, err, ownerDir, netnsRunDir)
		}
		return nil, fmt.Errorf("tap: lock %s: %w", ownerDir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("tap: lock %s: %w", ownerDir, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// sweepStale removes every namespace whose owner mark names a process
// that is gone, and the mark; it logs each as a warning (a run died without cleaning up). Namespaces
// without a mark are never touched. Call it with the lock held.
func sweepStale(log *zap.Logger) error {
	entries, err := os.ReadDir(ownerDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tap: read %s: %w", ownerDir, err)
	}
	var errs []error
	for _, e := range entries {
		ns := e.Name()
		if strings.HasPrefix(ns, ".") || ValidName(ns) != nil {
			continue // the lock, a temporary file, or not a mark of ours
		}
		o, ok, err := readMark(ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok || o.alive() {
			continue
		}
		exists, err := namespaceExists(ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if exists {
			if err := deleteNamespace(ns); err != nil {
				errs = append(errs, err)
				continue
			}
			log.Warn("tap: removed a network namespace left by a tsnsim that is gone",
				zap.String("netns", ns), zap.Int("owner_pid", o.pid))
		}
		if err := removeMark(ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
