package berthtest

import (
	"os/exec"
	"syscall"
)

// killWithParent makes the kernel kill the child when the test process dies,
// so that a test binary killed by its timeout leaves no apiserver behind.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
