package codec

// Packet is what validation learns about a log packet. ID and EmitterID are the raw
// contents of the JSON strings (escapes left as they are, so they can be echoed into
// JSON unchanged) and alias the body.
type Packet struct {
	ID        []byte
	EmitterID []byte
	Messages  int
}
