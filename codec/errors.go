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

// Refusals of the request parser. Every one has Close set: Parse refuses before the
// request's body has been consumed (it never buffers a body it will not use), so the
// bytes that follow on the connection are not a request boundary the server can find.
//
// Reasons are plain ASCII phrases without '"' or '\\' so AppendError can put them into
// JSON unescaped; a test holds every one of them to that.
var (
	ErrRequestLineTooLong  = &Error{Status: 414, Reason: "request line too long", Close: true}
	ErrHeaderTooLarge      = &Error{Status: 431, Reason: "request header fields too large", Close: true}
	ErrMethod              = &Error{Status: 400, Reason: "invalid method", Close: true}
	ErrTarget              = &Error{Status: 400, Reason: "invalid request target", Close: true}
	ErrVersion             = &Error{Status: 400, Reason: "malformed http version", Close: true}
	ErrVersionUnsupported  = &Error{Status: 505, Reason: "http version not supported", Close: true}
	ErrBareCR              = &Error{Status: 400, Reason: "bare CR in request head", Close: true}
	ErrBareLF              = &Error{Status: 400, Reason: "line not terminated by CRLF", Close: true}
	ErrObsFold             = &Error{Status: 400, Reason: "obsolete line folding", Close: true}
	ErrSpaceBeforeColon    = &Error{Status: 400, Reason: "whitespace before colon", Close: true}
	ErrFieldName           = &Error{Status: 400, Reason: "invalid header field name", Close: true}
	ErrFieldValue          = &Error{Status: 400, Reason: "invalid character in header value", Close: true}
	ErrHostMissing         = &Error{Status: 400, Reason: "missing host header", Close: true}
	ErrHostDuplicate       = &Error{Status: 400, Reason: "duplicate host header", Close: true}
	ErrContentLength       = &Error{Status: 400, Reason: "invalid content-length", Close: true}
	ErrContentLengthDiffer = &Error{Status: 400, Reason: "conflicting content-length", Close: true}
	ErrLengthAndChunked    = &Error{Status: 400, Reason: "both transfer-encoding and content-length", Close: true}
	ErrChunkedHTTP10       = &Error{Status: 400, Reason: "transfer-encoding in http/1.0", Close: true}
	ErrTransferEncoding    = &Error{Status: 501, Reason: "unsupported transfer-encoding", Close: true}
	ErrBodyTooLarge        = &Error{Status: 413, Reason: "body too large", Close: true}
	ErrChunkSize           = &Error{Status: 400, Reason: "invalid chunk size", Close: true}
	ErrChunkExtension      = &Error{Status: 400, Reason: "invalid chunk extension", Close: true}
	ErrChunkLineTooLong    = &Error{Status: 400, Reason: "chunk size line too long", Close: true}
	ErrChunkData           = &Error{Status: 400, Reason: "chunk data not followed by CRLF", Close: true}
	ErrChunkFraming        = &Error{Status: 413, Reason: "chunk framing larger than the body limit", Close: true}
	ErrExpectation         = &Error{Status: 417, Reason: "unsupported expectation", Close: true}
	ErrContentEncoding     = &Error{Status: 415, Reason: "unsupported content-encoding", Close: true}
)

// Refusals of a complete, well-framed request: the caller has discarded its bytes, so
// the connection may stay open.
var (
	ErrGzipTooLarge = &Error{Status: 413, Reason: "decompressed body too large"}
	ErrGzipBody     = &Error{Status: 400, Reason: "bad gzip body"}
)
