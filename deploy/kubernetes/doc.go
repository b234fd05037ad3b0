// Package kubernetes holds no code: its test (manifests_test.go) decodes the
// manifests in this directory strictly into the k8s.io/api types and checks them
// against each other, against the Dockerfile and against sluice's settings. See
// docs/scaling.md.
package kubernetes
