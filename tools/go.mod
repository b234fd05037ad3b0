// The project's lint tool, pinned, in a module of its own: its dependencies
// (golang.org/x/tools and newer x/sys, x/net) stay out of the product's go.mod and
// out of bench's build list. make lint runs it with go tool -modfile.
module github.com/sluicelog/sluice/tools

go 1.26.0

tool honnef.co/go/tools/cmd/staticcheck

require (
	github.com/BurntSushi/toml v1.4.1-0.20240526193622-a339e1f7089c // indirect
	golang.org/x/exp/typeparams v0.0.0-20231108232855-2478ac86f678 // indirect
	golang.org/x/mod v0.41.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/tools v0.51.0 // indirect
	honnef.co/go/tools v0.8.2 // indirect
)
