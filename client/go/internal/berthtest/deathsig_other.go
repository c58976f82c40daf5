//go:build !linux

package berthtest

import "os/exec"

// killWithParent is Linux-only; elsewhere a killed test binary may leave its
// apiserver running.
func killWithParent(*exec.Cmd) {}
