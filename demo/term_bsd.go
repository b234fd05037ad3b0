//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package demo

import "golang.org/x/sys/unix"

const (
	termIoctlGet = unix.TIOCGETA
	termIoctlSet = unix.TIOCSETA
)
