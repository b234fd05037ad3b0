package proxy

import (
	"strconv"

	"github.com/sluicelog/sluice/buildinfo"
)

// buildInfoSeries is distributor_build_info{version,commit,goversion}, always 1:
// which build is running, joinable onto any other series.
var buildInfoSeries = func() string {
	i := buildinfo.Get()
	return "distributor_build_info{version=" + strconv.Quote(i.Version) + ",commit=" + strconv.Quote(i.Commit) +
		",goversion=" + strconv.Quote(i.GoVersion) + "}"
}()
