package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the child if the test binary dies
// first (a timeout, a panic), so no redis-server outlives its test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
