package demo

import "golang.org/x/sys/unix"

const (
	termIoctlGet = unix.TCGETS
	termIoctlSet = unix.TCSETS
)
