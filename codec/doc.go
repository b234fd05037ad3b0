// Package codec is sluice's wire format: HTTP/1.1 requests and responses parsed and
// written on raw bytes, and log-packet validation.
//
// Nothing here does I/O or imports gnet. Parsers take the bytes a connection has
// buffered so far and return slices into them; callers own the buffers. Every entry
// point is allocation-free on the hot path and fuzzed.
package codec
