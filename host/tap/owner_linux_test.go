//go:build linux

package tap

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestOwnerAlive: an owner is alive only while its pid runs with the
// start time of the mark: not after pid reuse (another start time), not
// as a zombie, not once reaped.
func TestOwnerAlive(t *testing.T) {
	start, zombie, err := procStart(os.Getpid())
	if err != nil || zombie {
		t.Fatalf("procStart(self): %v %v", err, zombie)
	}
	if !(owner{os.Getpid(), start}).alive() {
		t.Error("this process is not alive")
	}
	if (owner{os.Getpid(), start + 1}).alive() {
		t.Error("a reused pid (another start time) counts as alive")
	}

	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := cmd.Process.Pid
	cstart, _, _ := procStart(pid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, z, err := procStart(pid); err == nil && z {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child did not become a zombie")
		}
	}
	if (owner{pid, cstart}).alive() {
		t.Error("a zombie counts as alive")
	}
	cmd.Wait()
	if (owner{pid, cstart}).alive() {
		t.Error("a reaped process counts as alive")
	}
}
