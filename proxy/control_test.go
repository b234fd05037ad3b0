package proxy

import (
	"time"
)

// answerProbes folds in a passing health probe for every analyzer, as Start's
// first probe round does, for tests that build a Server without starting it.
func answerProbes(srv *Server) {
	for id := range srv.cfg.Analyzers {
		srv.ctl.probed(probeResult{id: id, ok: true, status: 200}, time.Now())
	}
}
