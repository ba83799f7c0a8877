package tap

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestTAPPrerequisites checks the errors of the prerequisite check
// through its hooks, so it runs rootless too: capabilities decide, not
// the user id.
func TestTAPPrerequisites(t *testing.T) {
	oldCaps, oldTun := effectiveCaps, tunPath
	t.Cleanup(func() { effectiveCaps, tunPath = oldCaps, oldTun })
	caps := func(bits ...int) func() (uint64, error) {
		var v uint64
		for _, b := range bits {
			v |= 1 << b
		}
		return func() (uint64, error) { return v, nil }
	}
	tunPath = t.TempDir() // exists

	for _, c := range []struct {
		name  string
		caps  []int
		netns bool
		want  []string // substrings of the error; nil: no error
	}{
		{"none", nil, false, []string{"CAP_NET_ADMIN", "embedded backend"}},
		{"none, netns", nil, true, []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN"}},
		{"net admin", []int{capNetAdmin}, false, nil},
		{"net admin, netns", []int{capNetAdmin}, true, []string{"CAP_SYS_ADMIN", "--netns"}},
		{"sys admin only", []int{capSysAdmin}, true, []string{"CAP_NET_ADMIN"}},
		{"both, netns", []int{capNetAdmin, capSysAdmin}, true, nil},
	} {
		effectiveCaps = caps(c.caps...)
		err := checkPrerequisites(c.netns)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), "tap: ") {
			t.Errorf("%s: got %v", c.name, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", c.name, err, w)
			}
		}
		if !c.netns && strings.Contains(err.Error(), "CAP_SYS_ADMIN (") {
			t.Errorf("%s: asks for CAP_SYS_ADMIN without a namespace: %v", c.name, err)
		}
	}
	effectiveCaps = caps()
	if _, err := New(Config{Name: "x"}); err == nil || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("New without capabilities: got %v", err)
	}

	effectiveCaps = caps(capNetAdmin, capSysAdmin)
	tunPath = filepath.Join(t.TempDir(), "net", "tun")
	err := checkPrerequisites(false)
	if err == nil || !strings.Contains(err.Error(), tunPath) || !strings.Contains(err.Error(), "modprobe tun") {
		t.Errorf("no tun: got %v, want an error naming %s and modprobe tun", err, tunPath)
	}
}

// TestTAPConfigValidate checks the configuration errors and defaults.
func TestTAPConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "name is empty"},
		{Config{Name: "a-very-long-interface-name"}, "longer than 15"},
		{Config{Name: "t", MTU: 10}, "MTU 10"},
		{Config{Name: "t", MAC: []byte{1, 2}}, "not an Ethernet address"},
		{Config{Name: "t", Netns: "a/b"}, "namespace name"},
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

// TestValidName follows the kernel's dev_valid_name.
func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "tsn-a", "123456789012345", "eth0.100", "x%d", "é"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                 "empty",
		"1234567890123456": "longer than 15",
		".":                "not allowed",
		"..":               "not allowed",
		"a/b":              "'/'",
		"a:b":              "':'",
		"a b":              "whitespace",
		"a\tb":             "whitespace",
		"a\nb":             "whitespace",
		"a\x00b":           "NUL",
	} {
		err := ValidName(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error with %q", bad, err, want)
		}
	}
}
