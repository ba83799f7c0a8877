package tap

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestTAPPrerequisites checks the errors of the prerequisite check
// through its hooks, so it runs rootless too.
func TestTAPPrerequisites(t *testing.T) {
	oldEUID, oldTun := geteuid, tunPath
	t.Cleanup(func() { geteuid, tunPath = oldEUID, oldTun })

	geteuid = func() int { return 1000 }
	err := checkPrerequisites()
	if err == nil || !strings.HasPrefix(err.Error(), "tap: ") ||
		!strings.Contains(err.Error(), "root") || !strings.Contains(err.Error(), "embedded backend") {
		t.Errorf("non-root: got %v, want an error naming root and the embedded backend", err)
	}
	if _, err := New(Config{Name: "x"}); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("New as non-root: got %v", err)
	}

	geteuid = func() int { return 0 }
	tunPath = filepath.Join(t.TempDir(), "net", "tun")
	err = checkPrerequisites()
	if err == nil || !strings.Contains(err.Error(), tunPath) || !strings.Contains(err.Error(), "modprobe tun") {
		t.Errorf("no tun: got %v, want an error naming %s and modprobe tun", err, tunPath)
	}

	tunPath = t.TempDir() // exists
	if err := checkPrerequisites(); err != nil {
		t.Errorf("all present: %v", err)
	}
}

// TestTAPConfigValidate checks the configuration errors and defaults.
func TestTAPConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Name is empty"},
		{Config{Name: "a-very-long-interface-name"}, "longer than 15"},
		{Config{Name: "t", MTU: 10}, "MTU 10"},
		{Config{Name: "t", MAC: []byte{1, 2}}, "not an Ethernet address"},
	} {
		err := c.cfg.validate()
		if err == nil || !strings.HasPrefix(err.Error(), "tap: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.cfg, err, c.want)
		}
	}
	cfg := Config{Name: "t"}
	if err := cfg.validate(); err != nil || cfg.MTU != DefaultMTU || cfg.Logger == nil {
		t.Errorf("defaults: %v %+v", err, cfg)
	}
}
