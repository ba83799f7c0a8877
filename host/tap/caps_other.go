//go:build !linux

package tap

import "errors"

// capsEffective fails: capabilities are Linux only.
func capsEffective() (uint64, error) {
	return 0, errors.New("capabilities are Linux only")
}
