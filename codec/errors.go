package codec

// Error is a request the parser refuses. Status is what to answer, Reason a short
// machine-friendly phrase for the JSON error body. Close says the connection cannot
// be trusted past this point (framing is lost) and must be closed after the answer.
type Error struct {
	Status int
	Reason string
	Close  bool
}

func (e *Error) Error() string { return e.Reason }
