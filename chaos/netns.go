package main

// Network namespaces: one per analyzer, joined to the host by a veth pair with a
// private /30 (host .1, analyzer .2). Partitions are blackhole routes: the kernel
// here has no netem qdisc, no tc actions and no iptables binary, but routes work
// in every namespace. A blackhole route drops what would leave by it without a
// word, so a route in the namespace towards the host loses the analyzer's answers
// (and its SYN-ACKs), and one on the host towards the analyzer loses the requests.

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// netns is one analyzer's namespace. Its fields are set by newNetns and read only.
type netns struct {
	name       string // ip netns name
	hostIf     string // veth end on the host
	hostAddr   string // 10.213.<i>.1
	nsAddr     string // 10.213.<i>.2
	blackholed [2]bool
}

// nsPrefix names every namespace this harness creates, with the creating pid, so
// a crashed run's leftovers can be told from a running one's.
const nsPrefix = "sluice-chaos-"

// run runs a command and returns its combined output in the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetns creates namespace i of this process: the namespace, the veth pair and
// the addresses. On error what was made is removed.
func newNetns(i int) (*netns, error) {
	n := &netns{
		name:     nsPrefix + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i),
		hostIf:   "sch" + strconv.Itoa(os.Getpid()%100000) + "x" + strconv.Itoa(i),
		hostAddr: "10.213." + strconv.Itoa(i) + ".1",
		nsAddr:   "10.213." + strconv.Itoa(i) + ".2",
	}
	nsIf := "eth0"
	steps := [][]string{
		{"ip", "netns", "add", n.name},
		{"ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", nsIf, "netns", n.name},
		{"ip", "addr", "add", n.hostAddr + "/30", "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
		{"ip", "-n", n.name, "addr", "add", n.nsAddr + "/30", "dev", nsIf},
		{"ip", "-n", n.name, "link", "set", nsIf, "up"},
		{"ip", "-n", n.name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			n.remove()
			return nil, err
		}
	}
	return n, nil
}

// remove deletes the namespace (which deletes the veth pair) and the host's route
// to it; errors are ignored (it may be half made).
func (n *netns) remove() {
	n.heal()
	_ = run("ip", "netns", "del", n.name)
	_ = run("ip", "link", "del", n.hostIf) // gone with the namespace, unless it never moved
}

// dir selects which way a partition drops packets.
type dir uint8

const (
	toAnalyzer dir = iota // requests (host → analyzer)
	toHost                // answers (analyzer → host)
	numDirs
)

var dirNames = [numDirs]string{"to-analyzer", "to-host"}

func (d dir) String() string {
	if d < numDirs {
		return dirNames[d]
	}
	return "dir(" + strconv.Itoa(int(d)) + ")"
}

// blackhole drops packets going in d (idempotent).
func (n *netns) blackhole(d dir) error {
	if n.blackholed[d] {
		return nil
	}
	var err error
	if d == toAnalyzer {
		err = run("ip", "route", "add", "blackhole", n.nsAddr+"/32")
	} else {
		err = run("ip", "-n", n.name, "route", "add", "blackhole", n.hostAddr+"/32")
	}
	if err == nil {
		n.blackholed[d] = true
	}
	return err
}

// heal removes every blackhole route.
func (n *netns) heal() {
	if n.blackholed[toAnalyzer] {
		_ = run("ip", "route", "del", "blackhole", n.nsAddr+"/32")
		n.blackholed[toAnalyzer] = false
	}
	if n.blackholed[toHost] {
		_ = run("ip", "-n", n.name, "route", "del", "blackhole", n.hostAddr+"/32")
		n.blackholed[toHost] = false
	}
}

// sweepStale removes namespaces left by runs of this harness whose process is
// gone (killed before its cleanup ran).
func sweepStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = run("ip", "netns", "del", name)
	}
	// Host routes of the 10.213.0.0/16 range left blackholed by a killed run.
	if out, err := exec.Command("ip", "route", "show", "type", "blackhole").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && strings.HasPrefix(f[1], "10.213.") {
				_ = run("ip", "route", "del", "blackhole", f[1])
			}
		}
	}
}
