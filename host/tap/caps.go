package tap

import (
	"fmt"
	"strings"
)

// Capability bits (linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
)

// effectiveCaps returns the calling thread's effective capability set;
// replaced by tests.
var effectiveCaps = capsEffective

// checkCapabilities reports which capabilities a TAP device needs and
// the process lacks: CAP_NET_ADMIN for the TAP and netlink, plus
// CAP_SYS_ADMIN to create and mount a network namespace. Root is decided
// by capabilities, not by the user id: a non-root user given these
// capabilities (setcap, systemd AmbientCapabilities) may run it, and
// root without them (a container that dropped them) may not.
func checkCapabilities(netns bool) error {
	have, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("tap: read the process's capabilities: %w", err)
	}
	var missing []string
	if have&(1<<capNetAdmin) == 0 {
		missing = append(missing, "CAP_NET_ADMIN (to create and configure the TAP interface)")
	}
	if netns && have&(1<<capSysAdmin) == 0 {
		missing = append(missing, "CAP_SYS_ADMIN (to create and mount network namespaces, --netns)")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("tap: the TAP backend needs %s; run as root or grant them "+
		"(e.g. setcap cap_net_admin,cap_sys_admin+ep tsnsim), or use the default rootless "+
		"embedded backend (host/netstack)", strings.Join(missing, " and "))
}
