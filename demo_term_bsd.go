//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package main

import "golang.org/x/sys/unix"

const (
	termIoctlGet = unix.TIOCGETA
	termIoctlSet = unix.TIOCSETA
)
