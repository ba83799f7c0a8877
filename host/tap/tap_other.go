//go:build !linux

package tap

import "errors"

// New fails: TAP devices, netlink and network namespaces are Linux only.
// Use the default rootless embedded backend (host/netstack) instead.
func New(cfg Config) (*Device, error) {
	return nil, errors.New("tap: TAP backend needs Linux; use the default embedded backend (host/netstack)")
}
