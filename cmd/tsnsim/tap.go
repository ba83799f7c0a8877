package main

import (
	"fmt"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"tsnsim/topology"
)

// tapOptions are the flags of the tap backend.
type tapOptions struct{}

func (o *tapOptions) addFlags(fs *pflag.FlagSet) {}

func (o *tapOptions) validate() error { return nil }

func runTAP(o *runOptions, cfg topology.Config, r *outcome, log *zap.Logger) error {
	return fmt.Errorf("--backend tap: not implemented yet")
}
