package demo

import "golang.org/x/sys/unix"

// termIsTerminal reports whether fd is a terminal.
func termIsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, termIoctlGet)
	return err == nil
}

// termCbreak turns off the terminal's line editing and echo, so the demo can read keys
// as they are typed and show the command line inside its redrawn view. Signals
// stay on: Ctrl-C is still SIGINT. golang.org/x/term only offers full raw mode,
// which would also take Ctrl-C and output newline translation away.
func termCbreak(fd int) (restore func(), err error) {
	old, err := unix.IoctlGetTermios(fd, termIoctlGet)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ICANON | unix.ECHO
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, termIoctlSet, &t); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, termIoctlSet, old) }, nil
}
