package main

import (
	"fmt"
	"os"
)

// demoMain is `sluice demo`.
func demoMain(args []string) int {
	fmt.Fprintln(os.Stderr, "sluice demo: not built yet")
	return 1
}
