package analyzer

import (
	"container/heap"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// delayed is a run of responses on one connection that may not leave before due.
type delayed struct {
	due     int64 // monotonic ns (Analyzer.now)
	seq     uint64
	c       *conn
	data    []byte
	ingests int   // ingest answers in data, for the latency histogram
	start   int64 // when their requests were read
	close   bool  // close the connection once data is written
}

// delayer holds answers back without blocking an event loop: the loop hands the
// bytes over and returns, and one goroutine per analyzer writes them with
// AsyncWrite when they fall due.
//
// Order on a connection is kept by two rules. The loop never lets a connection's due
// times go backwards (each is at least the previous one), and while a connection has
// answers in here, every later answer on it joins the queue too, even an undelayed
// one. The heap pops by (due, seq), so one connection's runs come out in the order
// they went in, and AsyncWrite calls from this single goroutine reach the loop in the
// order they were made.
//
// The heap has a mutex: it is touched only when an answer is delayed (the
// PROCESSING_DELAY_MS and "slow" modes), never on the undelayed path.
type delayer struct {
	a     *Analyzer
	mu    sync.Mutex
	items delayHeap
	seq   uint64
	wake  chan struct{} // capacity 1: a new earliest item or stop
	stop  chan struct{}
	done  chan struct{}
}

func newDelayer(a *Analyzer) *delayer {
	d := &delayer{a: a, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go d.run()
	return d
}

func (d *delayer) push(it *delayed) {
	d.mu.Lock()
	d.seq++
	it.seq = d.seq
	heap.Push(&d.items, it)
	first := d.items[0] == it
	d.mu.Unlock()
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// shutdown ends the goroutine and drops what is waiting: it runs when the analyzer
// stops, and the connections those answers were for are being closed.
func (d *delayer) shutdown() {
	close(d.stop)
	<-d.done
}

func (d *delayer) run() {
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		now := d.a.now()
		for len(d.items) > 0 && d.items[0].due <= now {
			it := heap.Pop(&d.items).(*delayed)
			d.mu.Unlock()
			it.send()
			d.mu.Lock()
		}
		wait := time.Hour
		if len(d.items) > 0 {
			wait = time.Duration(d.items[0].due - now)
		}
		d.mu.Unlock()

		timer.Reset(wait)
		select {
		case <-d.stop:
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// send hands the bytes to the connection's loop. The callback runs on that loop, so
// it may touch the connection's state.
func (it *delayed) send() {
	c := it.c
	_ = c.gc.AsyncWrite(it.data, func(gc gnet.Conn, err error) error {
		c.pending--
		if err == nil && it.ingests > 0 {
			c.sh.observeLatency(it.ingests, c.a.now()-it.start)
		}
		if it.close {
			return gc.Close()
		}
		return nil
	})
}

// delayHeap orders delayed answers by due time, then by arrival.
type delayHeap []*delayed

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].seq < h[j].seq
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(*delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
