package sched

// Peek returns the analyzer Pick(n, nil) would choose, without charging anyone; -1
// when none is eligible. The distributor's strict queue policy uses it to refuse a
// packet whose turn falls on a full analyzer without disturbing the credits.
func (c *Credit) Peek(n int) int {
	if len(c.idx) == 0 {
		return -1
	}
	nn := clampN(n)
	limit := c.limit
	if nn > c.maxN {
		limit = c.capFactor * c.total * nn
	}
	best := 0
	var bestCredit int64
	for k := range c.credit {
		v := min(c.credit[k]+c.weight[k]*nn, limit)
		if k == 0 || v > bestCredit {
			best, bestCredit = k, v
		}
	}
	return int(c.idx[best])
}
