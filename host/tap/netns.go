//go:build linux

package tap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsRunDir is where named namespaces are bind-mounted, by
// vishvananda/netns and by `ip netns` alike.
const netnsRunDir = "/run/netns"

// prepareRunDir makes netnsRunDir a shared mount point, as `ip netns add`
// does before it mounts a namespace there. Without this, a later `ip
// netns add` bind-mounts the directory over itself, copying the mounts
// made before into it, and those namespaces can no longer be removed
// (EBUSY).
func prepareRunDir() error {
	if err := os.MkdirAll(netnsRunDir, 0o755); err != nil {
		return fmt.Errorf("tap: create %s: %w", netnsRunDir, err)
	}
	err := unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: make it one, then shared.
		if err = unix.Mount(netnsRunDir, netnsRunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("tap: make %s a shared mount point: %w", netnsRunDir, err)
	}
	return nil
}

// namespaceExists reports whether a named network namespace (an entry of
// /var/run/netns, as `ip netns` makes) exists.
func namespaceExists(name string) (bool, error) {
	h, err := netns.GetFromName(name)
	if err == nil {
		h.Close()
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("tap: look up network namespace %q: %w", name, err)
}

// createNamespace creates the named network namespace and returns a
// handle to it, leaving the caller's namespace as it was.
//
// netns.NewNamed moves the calling OS thread into the new namespace, so
// it runs on a goroutine locked to its thread, which moves back to the
// original namespace before unlocking. If moving back fails, the
// goroutine exits still locked and the Go runtime ends that thread rather
// than reuse it in the wrong namespace.
func createNamespace(name string) (netns.NsHandle, error) {
	if err := prepareRunDir(); err != nil {
		return netns.None(), err
	}
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("tap: get current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if restoreErr := netns.Set(orig); restoreErr != nil {
			// The thread stays locked and dies with this goroutine.
			if err == nil {
				ns.Close()
				_ = netns.DeleteNamed(name)
			}
			ch <- result{err: fmt.Errorf("tap: return to the original network namespace: %w", restoreErr)}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			ch <- result{err: fmt.Errorf("tap: create network namespace %q: %w", name, err)}
			return
		}
		ch <- result{ns: ns}
	}()
	r := <-ch
	return r.ns, r.err
}

// deleteNamespace removes the named network namespace; processes still
// in it keep it alive until they exit.
func deleteNamespace(name string) error {
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("tap: delete network namespace %q: %w", name, err)
	}
	return nil
}
