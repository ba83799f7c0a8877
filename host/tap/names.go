package tap

import (
	"errors"
	"fmt"
)

// maxNameLen is the longest interface name the kernel takes: IFNAMSIZ
// (16) less the terminating NUL.
const maxNameLen = 15

// ValidName checks an interface name the way the kernel's
// dev_valid_name does: 1 to 15 bytes, not "." or "..", and no '/', ':'
// or whitespace. The namespace tsnsim names after the interface (a file
// under /run/netns) is then a valid name too.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("tap: interface name is empty")
	case len(name) > maxNameLen:
		return fmt.Errorf("tap: interface name %q is %d bytes, longer than %d", name, len(name), maxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("tap: interface name %q is not allowed", name)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '/', ':', ' ', '\t', '\n', '\v', '\f', '\r':
			return fmt.Errorf("tap: interface name %q contains %q: names may not contain '/', ':' or whitespace", name, c)
		case 0:
			return fmt.Errorf("tap: interface name %q contains a NUL byte", name)
		}
	}
	return nil
}
